#![doc = include_str!("../README.md")]
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod cursor;
mod decoder;
mod dump;
mod encode;
mod error;
mod lzf;
mod packed;
#[cfg(unix)]
mod parallel;
mod read_ahead;
mod reader;
mod value;

pub use config::DUP_CHECK_LIMIT;
pub use decoder::{
    Config, Decoder, Limits, MAX_REDIS_VERSION, MAX_VALKEY_VERSION, Recovery, Source, crc64,
    crc64_combine, module_id, module_name, type_name,
};
pub use dump::{Dump, decode_dump, seal_dump};
pub use encode::{
    Dropped, EncodeConfig, Encoder, ValueHead, ValueWriter, dump_payload, dump_payload_counted,
    dump_payload_len, dump_payload_spooled, dump_payload_with_meta,
};
pub use error::{
    Context, EncodeError, EncodeErrorKind, Error, ErrorKind, Result, Shown, printable,
};
#[cfg(unix)]
pub use parallel::{Batch, Part, Pipeline};
pub use read_ahead::ReadAhead;
#[cfg(feature = "tokio")]
pub use reader::AsyncReader;
pub use reader::{BytesReader, Reader, decode_all, decode_partial};
#[cfg(feature = "mmap")]
pub use reader::{MappedFile, MappedReader, mmap_file};
pub use value::*;
