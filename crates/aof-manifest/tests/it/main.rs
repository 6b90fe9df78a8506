//! Manifests, multi-part sequencing, truncation reports and the third-party AOF files.

mod corpus;

use std::path::Path;

use aof_manifest::{AofReader, ErrorKind, Event, FileKind, Manifest, ManifestErrorKind};
use bytes::BytesMut;

fn cmd(args: &[&str]) -> Vec<u8> {
    let mut b = BytesMut::new();
    resp_codec::encode_command(args, &mut b);
    b.to_vec()
}

/// A command as (file, db, offset, args).
type Cmd = (usize, u64, u64, Vec<String>);

/// Every command of the reader.
fn commands(reader: AofReader) -> Result<Vec<Cmd>, aof_manifest::Error> {
    let mut out = Vec::new();
    for ev in reader {
        if let Event::Command(c) = ev? {
            let args = c
                .cmd
                .args()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            out.push((c.file, c.db, c.offset, args));
        }
    }
    Ok(out)
}

#[test]
fn bad_manifests_name_the_line() {
    let cases: &[(&str, usize, ManifestErrorKind)] = &[
        ("", 0, ManifestErrorKind::Empty),
        (
            "file a seq 1 type b\n\nfile b seq 1 type i\n",
            2,
            ManifestErrorKind::Format,
        ),
        ("file a seq 1\n", 1, ManifestErrorKind::Format),
        ("file a seq 1 type b x\n", 1, ManifestErrorKind::Format),
        ("file \"a seq 1 type b\n", 1, ManifestErrorKind::Format),
        (
            "# c\nfile a seq 1 typo b\n",
            2,
            ManifestErrorKind::Missing("type"),
        ),
        (
            "file dir/a seq 1 type b\n",
            1,
            ManifestErrorKind::NotBaseName("dir/a".into()),
        ),
        (
            "file .. seq 1 type b\n",
            1,
            ManifestErrorKind::NotBaseName("..".into()),
        ),
        (
            "file a seq x type b\n",
            1,
            ManifestErrorKind::BadSeq("x".into()),
        ),
        (
            "file a seq 0 type b\n",
            1,
            ManifestErrorKind::BadSeq("0".into()),
        ),
        (
            "file a seq 1 type z\n",
            1,
            ManifestErrorKind::UnknownType("z".into()),
        ),
        (
            "file a seq 1 type b\nfile c seq 2 type b\n",
            2,
            ManifestErrorKind::DuplicateBase(1),
        ),
        (
            "file a seq 1 type b\nfile b seq 3 type i\nfile c seq 3 type i\n",
            3,
            ManifestErrorKind::NonMonotonicSeq { seq: 3, prev: 3 },
        ),
        (
            "file a seq 1 type i startoffset x endoffset 2\n",
            1,
            ManifestErrorKind::BadOffset("x".into()),
        ),
    ];
    for (text, line, kind) in cases {
        let e = Manifest::parse(text.as_bytes()).unwrap_err();
        assert_eq!((e.line(), e.kind()), (*line, kind), "{text:?}");
        if *line > 0 {
            assert!(e.to_string().contains(&format!("line {line}")), "{e}");
        }
    }
    let long = format!("file {} seq 1 type b\n", "a".repeat(2000));
    assert_eq!(
        Manifest::parse(long.as_bytes()).unwrap_err().kind().clone(),
        ManifestErrorKind::LineTooLong
    );
}

#[test]
fn manifests_as_redis_writes_them() {
    let m = Manifest::parse(
        b"# a comment\n\
          file \"my aof\\x41.1.base.rdb\" seq 1 type b\n\
          file appendonly.aof.1.incr.aof seq 1 type h\n\
          FILE appendonly.aof.2.incr.aof SEQ 2 TYPE i startoffset 100 endoffset 200 newkey v\n\
          file appendonly.aof.3.incr.aof seq 3 type i",
    )
    .unwrap();
    assert_eq!(m.base().unwrap().name, b"my aofA.1.base.rdb");
    let incrs: Vec<_> = m.incrs().collect();
    assert_eq!(incrs.len(), 2);
    assert_eq!(
        (incrs[0].start_offset, incrs[0].end_offset, incrs[0].line),
        (Some(100), Some(200), 4)
    );
    assert_eq!(m.history().next().unwrap().kind, FileKind::History);
    assert_eq!(m.load_order().len(), 3);
}

fn write_dir(dir: &Path, files: &[(&str, Vec<u8>)], manifest: &str) {
    for (name, data) in files {
        std::fs::write(dir.join(name), data).unwrap();
    }
    std::fs::write(dir.join("appendonly.aof.manifest"), manifest).unwrap();
}

/// An empty RDB 9 with checksums off, then an AOF tail.
fn rdb_preamble() -> Vec<u8> {
    b"REDIS0009\xfe\x00\x00\x01k\x01v\xff\0\0\0\0\0\0\0\0".to_vec()
}

#[test]
fn multi_part_reads_base_then_incrs_with_dbs_and_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut incr1 = cmd(&["SELECT", "3"]);
    incr1.extend(b"#TS:1700000001\r\n");
    incr1.extend(cmd(&["SET", "a", "1"]));
    let incr2 = cmd(&["SET", "b", "2"]);
    write_dir(
        dir.path(),
        &[
            ("appendonly.aof.1.base.rdb", rdb_preamble()),
            ("appendonly.aof.1.incr.aof", incr1),
            ("appendonly.aof.2.incr.aof", incr2),
            ("appendonly.aof.0.incr.aof", cmd(&["SET", "history", "x"])),
        ],
        "file appendonly.aof.1.base.rdb seq 1 type b\n\
         file appendonly.aof.0.incr.aof seq 9 type h\n\
         file appendonly.aof.1.incr.aof seq 1 type i\n\
         file appendonly.aof.2.incr.aof seq 2 type i\n",
    );
    let reader = AofReader::open(dir.path(), Default::default()).unwrap();
    assert_eq!(reader.files().len(), 3);
    assert!(reader.files()[2].last && !reader.files()[1].last);
    let mut keys = 0;
    let mut cmds = Vec::new();
    for ev in reader {
        match ev.unwrap() {
            Event::Rdb {
                item: rdb_format::Item::Key(k),
                file,
            } => {
                assert_eq!((file, k.head.db), (0, 0));
                keys += 1;
            }
            Event::Command(c) => {
                cmds.push((c.file, c.db, c.offset, c.ts, c.cmd.arg(1).unwrap().to_vec()))
            }
            _ => {}
        }
    }
    assert_eq!(keys, 1);
    assert_eq!(
        cmds,
        vec![
            (1, 3, 0, None, b"3".to_vec()),
            (1, 3, 39, Some(1_700_000_001), b"a".to_vec()),
            // each file starts in db 0, as Redis loads it
            (2, 0, 0, None, b"b".to_vec()),
        ]
    );
    // history on request, first
    let mut opts = aof_manifest::Options::default();
    opts.history(true);
    let with_history = commands(AofReader::open(dir.path(), opts).unwrap()).unwrap();
    assert_eq!(with_history[0].3[1], "history");
    // a missing file is named
    std::fs::remove_file(dir.path().join("appendonly.aof.2.incr.aof")).unwrap();
    let e = commands(AofReader::open(dir.path(), Default::default()).unwrap()).unwrap_err();
    assert!(e.to_string().contains("appendonly.aof.2.incr.aof"), "{e}");
}

#[test]
fn single_file_with_preamble_and_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = rdb_preamble();
    let tail = data.len() as u64;
    for c in [
        &["MULTI"][..],
        &["INCR", "n"],
        &["EXEC"],
        &["SELECT", "1"],
        &["DEL", "k"],
    ] {
        data.extend(cmd(c));
    }
    let path = dir.path().join("appendonly.aof");
    std::fs::write(&path, &data).unwrap();
    let got = commands(AofReader::open(&path, Default::default()).unwrap()).unwrap();
    let names: Vec<_> = got.iter().map(|c| c.3[0].clone()).collect();
    assert_eq!(names, ["MULTI", "INCR", "EXEC", "SELECT", "DEL"]);
    assert_eq!(got[0].2, tail);
    assert_eq!(got[4].1, 1);
}

#[test]
fn truncation_at_every_offset_of_the_last_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = Vec::new();
    let mut ends = vec![0u64]; // offsets where a cut leaves a valid file
    data.extend(b"#TS:1\r\n");
    ends.push(data.len() as u64);
    for c in [
        &["SET", "k", "v"][..],
        &["MULTI"],
        &["INCR", "n"],
        &["EXEC"],
        &["RPUSH", "l", "a", "b"],
    ] {
        data.extend(cmd(c));
        if c[0] != "MULTI" && c[0] != "INCR" {
            ends.push(data.len() as u64);
        }
    }
    let path = dir.path().join("cut.aof");
    for cut in 0..=data.len() {
        std::fs::write(&path, &data[..cut]).unwrap();
        let r = commands(AofReader::open(&path, Default::default()).unwrap());
        let cut = cut as u64;
        match r {
            Ok(_) => assert!(ends.contains(&cut), "cut {cut} read as valid"),
            Err(e) => {
                assert!(!ends.contains(&cut), "cut {cut} refused: {e}");
                assert!(e.is_truncated_tail(), "cut {cut}: {e}");
                let ok = e.ok_up_to().unwrap();
                // the last valid point before the cut
                let want = *ends.iter().filter(|&&x| x <= cut).max().unwrap();
                assert_eq!(ok, want, "cut {cut}: {e}");
                // cutting there gives a valid file
                std::fs::write(&path, &data[..ok as usize]).unwrap();
                commands(AofReader::open(&path, Default::default()).unwrap()).unwrap();
            }
        }
    }
}

#[test]
fn a_cut_in_a_middle_file_is_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut cut = cmd(&["SET", "a", "1"]);
    cut.truncate(cut.len() - 3);
    write_dir(
        dir.path(),
        &[("i1.aof", cut), ("i2.aof", cmd(&["SET", "b", "2"]))],
        "file i1.aof seq 1 type i\nfile i2.aof seq 2 type i\n",
    );
    let e = commands(AofReader::open(dir.path(), Default::default()).unwrap()).unwrap_err();
    assert!(!e.is_last_file() && !e.is_truncated_tail());
    assert!(matches!(e.kind(), ErrorKind::Truncated { .. }));
    assert_eq!(e.file(), Some("i1.aof"));
    assert!(e.to_string().contains("not the last file"), "{e}");
}

#[test]
fn bad_commands_are_errors_with_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.aof");
    let set = cmd(&["SET", "k", "v"]);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        ([set.clone(), b"+OK\r\n".to_vec()].concat(), "not a command"),
        ([set.clone(), b"*0\r\n".to_vec()].concat(), "empty command"),
        ([set.clone(), cmd(&["EXEC"])].concat(), "EXEC without MULTI"),
        ([set.clone(), cmd(&["SELECT", "x"])].concat(), "SELECT"),
        (
            [set.clone(), b"*1\n$4\nPING\n".to_vec()].concat(),
            "LF but no CR",
        ),
    ];
    for (data, msg) in cases {
        std::fs::write(&path, &data).unwrap();
        let e = commands(AofReader::open(&path, Default::default()).unwrap()).unwrap_err();
        assert!(e.to_string().contains(msg), "{e}");
        assert_eq!(e.ok_up_to(), Some(set.len() as u64), "{e}");
    }
}
