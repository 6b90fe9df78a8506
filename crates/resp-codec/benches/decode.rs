//! Decoding throughput of `resp-codec` next to the `redis-protocol` crate on the same bytes.
//!
//! `cargo bench -p resp-codec --bench decode`

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use resp_codec::{Decoder, Frame, encode, encode_command};

const COMMANDS: usize = 1_000_000;

/// 1,000,000 pipelined `SET key:N <100 bytes>` commands.
fn set_stream() -> BytesMut {
    let mut buf = BytesMut::new();
    let value = [b'x'; 100];
    for i in 0..COMMANDS {
        let key = format!("key:{i:07}");
        encode_command([&b"SET"[..], key.as_bytes(), &value], &mut buf);
    }
    buf
}

/// A cycle of RESP3 replies of every common kind, repeated.
fn mixed_stream(cycles: usize) -> (BytesMut, usize) {
    let bulk = |s: &str| Frame::BulkString(s.to_owned().into());
    let cycle = vec![
        Frame::SimpleString("OK".into()),
        Frame::Integer(123_456),
        bulk(&"v".repeat(50)),
        Frame::Array((0..5).map(|i| bulk(&format!("element-{i}"))).collect()),
        Frame::Map(
            (0..3)
                .map(|i| (bulk(&format!("field{i}")), Frame::Integer(i)))
                .collect(),
        ),
        Frame::Double(3.25),
        Frame::Boolean(true),
        Frame::Null,
        Frame::Set(vec![bulk("a"), bulk("b"), bulk("c")]),
        Frame::BigNumber("3492890328409238509324850943850943825024385".into()),
        Frame::Verbatim {
            format: *b"txt",
            text: "Some string".into(),
        },
        Frame::BulkError("SYNTAX invalid syntax".into()),
        Frame::Push(vec![bulk("message"), bulk("channel"), bulk("payload")]),
    ];
    let mut buf = BytesMut::new();
    for _ in 0..cycles {
        for f in &cycle {
            encode(f, &mut buf);
        }
    }
    (buf, cycles * cycle.len())
}

fn bench(c: &mut Criterion) {
    let sets = set_stream();
    let mut g = c.benchmark_group("set-pipeline");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(sets.len() as u64));
    g.bench_function("resp-codec", |b| {
        b.iter_batched(
            || sets.clone(),
            |mut buf| {
                let mut dec = Decoder::new();
                let mut n = 0;
                while let Some(f) = dec.decode(&mut buf).unwrap() {
                    n += usize::from(matches!(f, Frame::Array(_)));
                }
                assert_eq!(n, COMMANDS);
                buf // freed outside the timing
            },
            BatchSize::PerIteration,
        );
    });
    g.bench_function("resp-codec-commands", |b| {
        b.iter_batched(
            || sets.clone(),
            |mut buf| {
                let mut dec = Decoder::new();
                let mut n = 0;
                while let Some(c) = dec.decode_command(&mut buf).unwrap() {
                    n += usize::from(c.len() == 3);
                }
                assert_eq!(n, COMMANDS);
                buf // freed outside the timing
            },
            BatchSize::PerIteration,
        );
    });
    g.bench_function("redis-protocol", |b| {
        b.iter_batched(
            || sets.clone(),
            |mut buf| {
                let mut n = 0;
                while let Some((f, _, _)) =
                    redis_protocol::resp2::decode::decode_bytes_mut(&mut buf).unwrap()
                {
                    n += usize::from(matches!(
                        f,
                        redis_protocol::resp2::types::BytesFrame::Array(_)
                    ));
                }
                assert_eq!(n, COMMANDS);
                buf // freed outside the timing
            },
            BatchSize::PerIteration,
        );
    });
    g.finish();

    let (mixed, frames) = mixed_stream(100_000);
    let mut g = c.benchmark_group("resp3-replies");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(mixed.len() as u64));
    g.bench_function("resp-codec", |b| {
        b.iter_batched(
            || mixed.clone(),
            |mut buf| {
                let mut dec = Decoder::new();
                let mut n = 0;
                while dec.decode(&mut buf).unwrap().is_some() {
                    n += 1;
                }
                assert_eq!(n, frames);
                buf // freed outside the timing
            },
            BatchSize::PerIteration,
        );
    });
    g.bench_function("redis-protocol", |b| {
        b.iter_batched(
            || mixed.clone(),
            |mut buf| {
                let mut n = 0;
                while redis_protocol::resp3::decode::complete::decode_bytes_mut(&mut buf)
                    .unwrap()
                    .is_some()
                {
                    n += 1;
                }
                assert_eq!(n, frames);
                buf // freed outside the timing
            },
            BatchSize::PerIteration,
        );
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
