#![doc = include_str!("../README.md")]
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod cursor;
mod decoder;
mod dump;
mod encode;
mod encodings;
mod error;
mod lzf;
mod reader;
mod value;

pub use decoder::{
    Config, Decoder, Limits, MAX_REDIS_VERSION, MAX_VALKEY_VERSION, Next, Recovery, Source, crc64,
    module_id, module_name, type_name,
};
pub use dump::{Dump, decode_dump};
pub use encode::{
    Dropped, EncodeConfig, Encoder, dump_payload, dump_payload_counted, dump_payload_with_meta,
};
pub use error::{Context, Error, ErrorKind, Result, Shown, printable};
#[cfg(feature = "tokio")]
pub use reader::AsyncReader;
#[cfg(feature = "mmap")]
pub use reader::mmap_file;
pub use reader::{BytesReader, Reader, decode_all, decode_partial};
pub use value::*;
