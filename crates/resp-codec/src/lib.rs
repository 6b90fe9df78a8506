//! RESP2 and RESP3, sans-IO.
//!
//! [`Decoder`] turns bytes in a `BytesMut` into [`Frame`]s whose strings are `Bytes` slices of
//! the input (no copy). It keeps its place inside a partial frame, so a 512 MiB bulk string
//! arriving in 64 KiB reads is not rescanned on every read. Every length is checked against
//! [`Limits`] before anything is allocated for it, and every error carries its stream offset.
//! [`encode`] and [`encode_command`] write into a `BytesMut`. With the `codec` feature,
//! `RespCodec` plugs both into `tokio_util::codec::Framed`.
//!
//! ```
//! use bytes::BytesMut;
//! use resp_codec::{Decoder, Frame, encode};
//!
//! let reply = Frame::Array(vec![Frame::BulkString("v".into()), Frame::Null, Frame::Boolean(true)]);
//! let mut buf = BytesMut::new();
//! encode(&reply, &mut buf);
//! assert_eq!(Decoder::new().decode(&mut buf).unwrap(), Some(reply));
//! assert!(buf.is_empty());
//! ```
#![warn(missing_docs)]
#![deny(unsafe_code)]

mod args;
#[cfg(feature = "codec")]
mod codec;
mod decode;
mod encode;
mod error;
mod frame;

pub use args::{needs_quotes, quote_arg, split_args};
#[cfg(feature = "codec")]
pub use codec::{CodecError, RespCodec};
pub use decode::{Config, Decoder, Limits};
pub use encode::{encode, encode_bulk, encode_command, encode_header};
pub use error::{Error, ErrorKind, Result};
pub use frame::{Command, Frame};
