//! Round trips, byte-boundary splits and malformed input for the RESP codec.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use resp_codec::{Config, Decoder, ErrorKind, Frame, encode, encode_command};

/// Equality that treats NaN as equal to NaN and tells 0.0 from -0.0.
fn same(a: &Frame, b: &Frame) -> bool {
    a.identical(b)
}

fn line_bytes() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(
        any::<u8>().prop_filter("no CR/LF", |b| *b != b'\r' && *b != b'\n'),
        0..12,
    )
    .prop_map(Bytes::from)
}

fn blob() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from)
}

fn scalar() -> impl Strategy<Value = Frame> {
    prop_oneof![
        line_bytes().prop_map(Frame::SimpleString),
        line_bytes().prop_map(Frame::Error),
        any::<i64>().prop_map(Frame::Integer),
        blob().prop_map(Frame::BulkString),
        Just(Frame::NullBulk),
        Just(Frame::NullArray),
        Just(Frame::Null),
        any::<bool>().prop_map(Frame::Boolean),
        prop_oneof![
            any::<f64>(),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(f64::NAN),
            Just(-0.0),
            Just(f64::MIN_POSITIVE),
        ]
        .prop_map(Frame::Double),
        ("[-+]?[0-9]{1,60}").prop_map(|s| Frame::BigNumber(Bytes::from(s))),
        blob().prop_map(Frame::BulkError),
        (proptest::array::uniform3(any::<u8>()), blob())
            .prop_map(|(format, text)| Frame::Verbatim { format, text }),
    ]
}

fn frame() -> impl Strategy<Value = Frame> {
    scalar().prop_recursive(5, 64, 6, |inner| {
        let pairs = proptest::collection::vec((inner.clone(), inner.clone()), 0..4);
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Frame::Array),
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Frame::Set),
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Frame::Push),
            pairs.clone().prop_map(Frame::Map),
            (pairs, inner).prop_map(|(attributes, data)| Frame::Attribute {
                attributes,
                data: Box::new(data)
            }),
        ]
    })
}

fn decode_all(dec: &mut Decoder, buf: &mut BytesMut) -> Vec<Frame> {
    let mut out = Vec::new();
    while let Some(f) = dec.decode(buf).unwrap() {
        out.push(f);
    }
    out
}

/// Feeds `bytes` split at `cuts` and returns every frame.
fn decode_split(config: Config, bytes: &[u8], cuts: &[usize]) -> Vec<Frame> {
    let mut dec = Decoder::with_config(config);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut last = 0;
    for &c in cuts.iter().chain(std::iter::once(&bytes.len())) {
        buf.extend_from_slice(&bytes[last..c]);
        last = c;
        out.extend(decode_all(&mut dec, &mut buf));
    }
    assert!(buf.is_empty(), "bytes left over");
    assert_eq!(dec.offset(), bytes.len() as u64);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn encode_then_decode_is_identity(frames in proptest::collection::vec(frame(), 1..4)) {
        let mut buf = BytesMut::new();
        for f in &frames {
            encode(f, &mut buf);
        }
        let total = buf.len();
        let got = decode_split(Config::default(), &buf.clone(), &[]);
        prop_assert_eq!(got.len(), frames.len());
        for (a, b) in got.iter().zip(&frames) {
            prop_assert!(same(a, b), "{:?} != {:?}", a, b);
        }
        // and in random pieces
        let cuts: Vec<usize> = (1..total).step_by(total.max(7) / 7).collect();
        let split = decode_split(Config::default(), &buf, &cuts);
        prop_assert_eq!(split.len(), frames.len());
        for (a, b) in split.iter().zip(&frames) {
            prop_assert!(same(a, b));
        }
    }

    #[test]
    fn inline_commands_round_trip(args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..10), 1..5)) {
        let frame = Frame::Inline(args.into_iter().map(Bytes::from).collect());
        let mut buf = BytesMut::new();
        encode(&frame, &mut buf);
        let mut config = Config::default();
        config.inline(true);
        let got = decode_split(config, &buf, &[buf.len() / 2]);
        prop_assert_eq!(got, vec![frame]);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), inline in any::<bool>()) {
        let mut config = Config::default();
        config.inline(inline).limits_mut().max_depth(8).max_line_len(64);
        let mut dec = Decoder::with_config(config);
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = dec.decode(&mut buf) {}
    }
}

/// A stream with one frame of every kind, RESP2 and RESP3.
fn every_kind() -> Vec<Frame> {
    vec![
        Frame::SimpleString("OK".into()),
        Frame::Error("ERR bad".into()),
        Frame::Integer(-42),
        Frame::BulkString(Bytes::from_static(b"a\r\nb\0")),
        Frame::BulkString(Bytes::new()),
        Frame::NullBulk,
        Frame::NullArray,
        Frame::Null,
        Frame::Boolean(false),
        Frame::Double(1.5),
        Frame::Double(f64::NEG_INFINITY),
        Frame::BigNumber("-3492890328409238509324850943850943825024385".into()),
        Frame::BulkError("SYNTAX invalid".into()),
        Frame::Verbatim {
            format: *b"txt",
            text: "Some string".into(),
        },
        Frame::Array(vec![]),
        Frame::Map(vec![(
            Frame::SimpleString("k".into()),
            Frame::Array(vec![Frame::Integer(1), Frame::Null]),
        )]),
        Frame::Set(vec![Frame::Integer(1), Frame::BulkString("x".into())]),
        Frame::Attribute {
            attributes: vec![(Frame::SimpleString("ttl".into()), Frame::Integer(3600))],
            data: Box::new(Frame::Array(vec![Frame::Integer(2)])),
        },
        Frame::Push(vec![
            Frame::BulkString("message".into()),
            Frame::BulkString("ch".into()),
        ]),
    ]
}

#[test]
fn every_split_point_gives_the_same_frames() {
    let frames = every_kind();
    let mut buf = BytesMut::new();
    for f in &frames {
        encode(f, &mut buf);
    }
    let bytes = buf.to_vec();
    for cut in 0..=bytes.len() {
        let got = decode_split(Config::default(), &bytes, &[cut]);
        assert!(
            got.iter().zip(&frames).all(|(a, b)| same(a, b)) && got.len() == frames.len(),
            "cut at {cut}"
        );
    }
    // one byte at a time
    let cuts: Vec<usize> = (1..bytes.len()).collect();
    let got = decode_split(Config::default(), &bytes, &cuts);
    assert_eq!(got.len(), frames.len());
}

#[test]
fn inline_commands_as_redis_cli_and_telnet_send_them() {
    let mut config = Config::default();
    config.inline(true);
    let input = b"PING\r\n\r\nset k \"a b\\x00\"\nGET 'it\\'s'\r\n*1\r\n$4\r\nPING\r\n";
    let got = decode_split(config, input, &[]);
    let want = vec![
        Frame::Inline(vec!["PING".into()]),
        Frame::Inline(vec!["set".into(), "k".into(), Bytes::from_static(b"a b\0")]),
        Frame::Inline(vec!["GET".into(), "it's".into()]),
        Frame::command(["PING"]),
    ];
    assert_eq!(got, want);
    for cut in 0..=input.len() {
        assert_eq!(decode_split(config, input, &[cut]), want, "cut at {cut}");
    }
}

#[test]
fn strings_are_slices_of_the_input() {
    let mut buf = BytesMut::new();
    encode_command(["SET", "key", "value"], &mut buf);
    let start = buf.as_ptr() as usize;
    let end = start + buf.len();
    let f = Decoder::new().decode(&mut buf).unwrap().unwrap();
    for a in f.as_command().unwrap() {
        let p = a.as_ptr() as usize;
        assert!(p >= start && p < end, "argument was copied");
    }
}

fn error_of(config: Config, input: &[u8]) -> resp_codec::Error {
    let mut dec = Decoder::with_config(config);
    let mut buf = BytesMut::from(input);
    loop {
        match dec.decode(&mut buf) {
            Ok(Some(_)) => {}
            Ok(None) => panic!("no error for {:?}", String::from_utf8_lossy(input)),
            Err(e) => return e,
        }
    }
}

#[test]
fn malformed_input_gives_typed_errors_with_offsets() {
    let d = Config::default();
    let cases: Vec<(&[u8], ErrorKind, u64)> = vec![
        (b"?x\r\n", ErrorKind::BadType(b'?'), 0),
        (b"+OK\r\n@", ErrorKind::BadType(b'@'), 5),
        (b"$x\r\n", ErrorKind::BadLength, 0),
        (b"$\r\n", ErrorKind::BadLength, 0),
        (b"$-2\r\n", ErrorKind::NegativeLength(-2), 0),
        (b"*-5\r\n", ErrorKind::NegativeLength(-5), 0),
        (b"%-1\r\n", ErrorKind::NegativeLength(-1), 0),
        (b"$3\r\nabcd\r\n", ErrorKind::MissingCrlf, 7),
        (b"$3\r\nabc\n\n", ErrorKind::MissingCrlf, 7),
        (b"+OK\n", ErrorKind::BareLf, 3),
        (b"*1\n$1\nx\n", ErrorKind::BareLf, 2),
        (b":12a\r\n", ErrorKind::BadInteger, 0),
        (b":99999999999999999999\r\n", ErrorKind::BadInteger, 0),
        (b",1.2.3\r\n", ErrorKind::BadDouble, 0),
        (b"#x\r\n", ErrorKind::BadBoolean, 0),
        (b"(12a\r\n", ErrorKind::BadBigNumber, 0),
        (b"=3\r\ntxt\r\n", ErrorKind::BadVerbatim, 0),
        (b"_x\r\n", ErrorKind::BadNull, 0),
        (
            b"$600000000\r\n",
            ErrorKind::BulkTooLong {
                len: 600_000_000,
                limit: 512 << 20,
            },
            0,
        ),
        (
            b"*3000000000\r\n",
            ErrorKind::AggregateTooLong {
                len: 3_000_000_000,
                limit: i32::MAX as u64,
            },
            0,
        ),
    ];
    for (input, kind, offset) in cases {
        let e = error_of(d, input);
        assert_eq!(
            (e.kind(), e.offset()),
            (&kind, offset),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    // too deep
    let deep = "*1\r\n".repeat(200);
    let e = error_of(d, deep.as_bytes());
    assert_eq!(
        (e.kind(), e.offset()),
        (&ErrorKind::TooDeep { limit: 128 }, 128 * 4)
    );
    // a line that never ends
    let long = vec![b'+'; 70_000];
    assert_eq!(
        error_of(d, &long).kind(),
        &ErrorKind::LineTooLong { limit: 64 << 10 }
    );
    // an inline line with open quotes
    let mut inline = d;
    inline.inline(true);
    assert_eq!(
        error_of(inline, b"SET \"k v\r\n").kind(),
        &ErrorKind::UnbalancedQuotes
    );
    // a type byte is required inside an aggregate even with inline on
    assert_eq!(
        error_of(inline, b"*1\r\nfoo\r\n").kind(),
        &ErrorKind::BadType(b'f')
    );
}

#[test]
fn lying_lengths_do_not_allocate_what_they_claim() {
    // 512 MiB claimed, a few bytes given: waits for more, holds nothing big
    let mut dec = Decoder::new();
    let mut buf = BytesMut::from(&b"$536870912\r\nabc"[..]);
    assert_eq!(dec.decode(&mut buf).unwrap(), None);
    assert!(buf.capacity() < 1024);
    // two billion elements claimed
    let mut buf = BytesMut::from(&b"*2000000000\r\n:1\r\n"[..]);
    assert_eq!(dec.decode(&mut buf).unwrap(), None);
    assert!(buf.capacity() < 1024);
}

#[test]
fn offsets_count_the_whole_stream() {
    let mut dec = Decoder::new();
    let mut buf = BytesMut::from(&b"+a\r\n+b\r\n"[..]);
    decode_all(&mut dec, &mut buf);
    assert_eq!(dec.offset(), 8);
    buf.extend_from_slice(b"+c\r\n:x\r\n");
    let _ = dec.decode(&mut buf).unwrap();
    let e = dec.decode(&mut buf).unwrap_err();
    assert_eq!(e.offset(), 12);
    assert!(e.to_string().contains("offset 12"));
}

#[cfg(feature = "codec")]
#[test]
fn tokio_codec_frames_a_stream() {
    use tokio_util::codec::{Decoder as _, Encoder as _};
    let mut codec = resp_codec::RespCodec::default();
    let mut buf = BytesMut::new();
    for f in every_kind() {
        codec.encode(&f, &mut buf).unwrap();
    }
    let mut n = 0;
    while codec.decode(&mut buf).unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, every_kind().len());
    buf.extend_from_slice(b"?");
    assert!(matches!(
        codec.decode(&mut buf),
        Err(resp_codec::CodecError::Protocol(_))
    ));
}

proptest! {
    #[test]
    fn decode_command_agrees_with_decode(
        cmds in proptest::collection::vec(proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 1..6), 1..6),
        cut in any::<proptest::sample::Index>(),
    ) {
        let mut bytes = BytesMut::new();
        for c in &cmds {
            encode_command(c, &mut bytes);
        }
        let cut = cut.index(bytes.len() + 1);
        let mut dec = Decoder::new();
        let mut buf = BytesMut::from(&bytes[..cut]);
        let mut got = Vec::new();
        while let Some(c) = dec.decode_command(&mut buf).unwrap() {
            got.push(c);
        }
        buf.extend_from_slice(&bytes[cut..]);
        while let Some(c) = dec.decode_command(&mut buf).unwrap() {
            got.push(c);
        }
        prop_assert_eq!(got.len(), cmds.len());
        let mut raw_total = 0;
        for (g, want) in got.iter().zip(&cmds) {
            let args: Vec<Vec<u8>> = g.args().map(<[u8]>::to_vec).collect();
            prop_assert_eq!(&args, want);
            prop_assert_eq!(g.to_vec().len(), want.len());
            raw_total += g.raw().len();
        }
        prop_assert_eq!(raw_total, bytes.len());
    }
}

#[test]
fn decode_command_takes_inline_and_refuses_other_frames() {
    let mut config = Config::default();
    config.inline(true);
    let mut dec = Decoder::with_config(config);
    let mut buf = BytesMut::from(&b"set \"a\\nb\" v\r\n+OK\r\n"[..]);
    let c = dec.decode_command(&mut buf).unwrap().unwrap();
    assert!(c.is("SET"));
    assert_eq!(
        c.to_vec(),
        vec![Bytes::from("set"), Bytes::from("a\nb"), Bytes::from("v")]
    );
    assert_eq!(c.raw().len(), 14);
    let e = dec.decode_command(&mut buf).unwrap_err();
    assert_eq!((e.kind(), e.offset()), (&ErrorKind::NotACommand, 14));
}

#[test]
fn a_partial_frame_is_resumed_not_rescanned() {
    // an array of 1000 bulk strings arriving in pieces: the decoder keeps what it parsed
    let args: Vec<String> = (0..1000).map(|i| format!("element-{i}")).collect();
    let mut bytes = BytesMut::new();
    encode_command(&args, &mut bytes);
    let mut dec = Decoder::new();
    let mut buf = BytesMut::new();
    let mut parsed = 0;
    for piece in bytes.chunks(97) {
        buf.extend_from_slice(piece);
        if let Some(f) = dec.decode(&mut buf).unwrap() {
            assert_eq!(f.as_command().unwrap().len(), 1000);
            assert_eq!(dec.partial_len(), 0);
            return;
        }
        // everything up to the last whole element is parsed and will not be looked at again
        assert!(dec.partial_len() >= parsed, "went backwards");
        assert!(
            buf.len() - dec.partial_len() < 40,
            "more than one element left unparsed"
        );
        parsed = dec.partial_len();
    }
    panic!("the frame never completed");
}
