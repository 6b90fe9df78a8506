//! `DUMP` payloads: a value's type byte and body, the 2-byte RDB version and a CRC-64 — what
//! `DUMP` returns and `RESTORE` takes.

use bytes::{BufMut, Bytes, BytesMut};

use crate::decoder::{Config, Decoder, crc64};
use crate::error::{Error, ErrorKind, Result};
use crate::value::{Item, Value};

/// A decoded `DUMP` payload.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Dump {
    /// The value.
    pub value: Value,
    /// The RDB version the payload was written with (Valkey 9: 80).
    pub version: u16,
    /// Module metadata attached to the key (Redis 8.6+ payloads may start with a KEY_META
    /// block).
    pub key_meta: Vec<crate::value::KeyMeta>,
}

/// Decodes a `DUMP` payload: checks its CRC-64 and version, then decodes the value.
/// Errors carry offsets into the payload.
///
/// ```
/// // DUMP of a string "v" from Redis 7.0 (RDB 10)
/// let payload = b"\x00\x01v\x0a\x00\x91\x08\xce\xb2\x19\x38\x8a\xce";
/// let d = rdb_format::decode_dump(payload).unwrap();
/// assert_eq!(d.value, rdb_format::Value::String("v".into()));
/// assert_eq!(d.version, 10);
/// ```
pub fn decode_dump(payload: &[u8]) -> Result<Dump> {
    if payload.len() < 11 {
        return Err(Error::new(
            ErrorKind::Truncated {
                what: "a DUMP payload (type, body, version, CRC-64)",
            },
            payload.len() as u64,
        ));
    }
    let body_end = payload.len() - 10;
    let version = u16::from_le_bytes([payload[body_end], payload[body_end + 1]]);
    let expected = u64::from_le_bytes(payload[body_end + 2..].try_into().unwrap_or([0; 8]));
    let actual = crc64(&payload[..body_end + 2]);
    if expected != actual {
        return Err(Error::new(
            ErrorKind::Checksum { expected, actual },
            body_end as u64 + 2,
        ));
    }
    // the body as the only key of an RDB stream: magic, [KEY_META block], type, empty key,
    // body, EOF
    let magic = if version >= 80 {
        format!("VALKEY{version:03}")
    } else {
        format!("REDIS{version:04}")
    };
    // Redis 8.6+ payloads may open with a KEY_META block before the type byte
    let mut ty_at = 0;
    if (13..80).contains(&version) && payload[0] == 0xF3 {
        let n = crate::decoder::key_meta_len(&payload[1..body_end])
            .map_err(|(kind, at)| Error::new(kind, 1 + at as u64))?;
        ty_at = 1 + n;
        if ty_at >= body_end {
            return Err(Error::new(
                ErrorKind::Truncated {
                    what: "a DUMP payload's type after its key metadata",
                },
                ty_at as u64,
            ));
        }
    }
    let mut rdb = BytesMut::with_capacity(payload.len() + 20);
    rdb.put_slice(magic.as_bytes());
    rdb.put_slice(&payload[..=ty_at]);
    rdb.put_u8(0);
    rdb.put_slice(&payload[ty_at + 1..body_end]);
    rdb.put_u8(0xff);
    rdb.put_bytes(0, 8);
    let key_at = (magic.len() + ty_at + 1) as u64;
    let to_payload = |e: Error| {
        // map the offset in the synthetic stream back into the payload (the empty key byte
        // at `key_at` is ours)
        let o = e.offset();
        let off = if o > key_at { o - 1 } else { o };
        let off = off.saturating_sub(magic.len() as u64).min(body_end as u64);
        let mut err = Error::new(e.kind().clone(), off);
        err = err.with_context(e.context());
        err
    };
    let mut config = Config::default();
    config
        .chunk_threshold(usize::MAX)
        .string_piece(u64::MAX)
        .verify_checksum(false);
    let mut dec = Decoder::with_config(config);
    let mut src = rdb.freeze();
    let mut value = None;
    let mut key_meta = Vec::new();
    // the whole stream is in memory: the input has ended
    while let Some(item) = dec.decode_eof(&mut src).map_err(to_payload)? {
        if let Item::Key(rec) = item {
            key_meta = rec.head.key_meta;
            value = Some(rec.value);
        }
    }
    if !src.is_empty() {
        return Err(Error::new(
            ErrorKind::TrailingData(src.len() as u64),
            body_end as u64,
        ));
    }
    let value = value.ok_or_else(|| {
        Error::new(
            ErrorKind::Corrupt {
                what: "DUMP payload",
                why: "no value".into(),
            },
            0,
        )
    })?;
    Ok(Dump {
        value,
        version,
        key_meta,
    })
}

/// Closes a `DUMP` payload: appends the 2-byte RDB version and the CRC-64 to `body` (the
/// type byte and the value's encoding, as a module value's raw bytes come from the decoder).
///
/// ```
/// let payload = rdb_format::seal_dump(bytes::BytesMut::from(&b"\x00\x01v"[..]), 10);
/// let d = rdb_format::decode_dump(&payload).unwrap();
/// assert_eq!(d.value, rdb_format::Value::String("v".into()));
/// ```
pub fn seal_dump(mut body: BytesMut, version: u16) -> Bytes {
    body.put_u16_le(version);
    let crc = crc64(&body);
    body.put_u64_le(crc);
    body.freeze()
}
