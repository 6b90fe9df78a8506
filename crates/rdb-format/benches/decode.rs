//! Decoder throughput on synthetic RDB files of 1k, 10k, 100k and 1M keys (strings, hashes as
//! listpacks, lists), through the zero-copy driver.

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rdb_format::{BytesReader, Item};
use test_support::rdb::{eof_unchecked, len, string as s};

fn file(keys: usize) -> Bytes {
    let mut f = b"REDIS0010\xfe\x00".to_vec();
    for i in 0..keys {
        match i % 4 {
            0 | 1 => {
                f.push(0);
                s(format!("key:{i:010}").as_bytes(), &mut f);
                s(
                    format!("value-{i}-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")
                        .as_bytes(),
                    &mut f,
                );
            }
            2 => {
                // hashtable hash of 8 fields
                f.push(4);
                s(format!("hash:{i:010}").as_bytes(), &mut f);
                len(8, &mut f);
                for j in 0..8 {
                    s(format!("field{j}").as_bytes(), &mut f);
                    s(format!("value{j}").as_bytes(), &mut f);
                }
            }
            _ => {
                // linked list of 8 elements
                f.push(1);
                s(format!("list:{i:010}").as_bytes(), &mut f);
                len(8, &mut f);
                for j in 0..8 {
                    s(format!("element-{j}").as_bytes(), &mut f);
                }
            }
        }
    }
    eof_unchecked(&mut f);
    Bytes::from(f)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for keys in [1_000, 10_000, 100_000, 1_000_000] {
        let data = file(keys);
        g.throughput(Throughput::Bytes(data.len() as u64));
        if keys >= 100_000 {
            g.sample_size(10);
        }
        g.bench_function(format!("{keys}_keys"), |b| {
            b.iter(|| {
                let mut n = 0;
                for item in BytesReader::new(data.clone()) {
                    if let Ok(Item::Key(_)) = item {
                        n += 1;
                    }
                }
                assert_eq!(n, keys);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
