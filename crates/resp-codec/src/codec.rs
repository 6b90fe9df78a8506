//! `tokio_util::codec` implementations (feature `codec`).

use bytes::BytesMut;

use crate::{Config, Decoder, Error, Frame, encode};

/// An error from [`RespCodec`]: I/O or protocol.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The peer sent bad RESP.
    #[error(transparent)]
    Protocol(#[from] Error),
}

/// [`Decoder`] and [`encode`] as a `tokio_util` codec, for `Framed` transports.
///
/// ```
/// use bytes::BytesMut;
/// use tokio_util::codec::{Decoder as _, Encoder as _};
/// use resp_codec::{Frame, RespCodec};
///
/// let mut codec = RespCodec::default();
/// let mut buf = BytesMut::new();
/// codec.encode(Frame::command(["PING"]), &mut buf).unwrap();
/// assert_eq!(codec.decode(&mut buf).unwrap(), Some(Frame::command(["PING"])));
/// ```
#[derive(Debug, Default)]
pub struct RespCodec {
    decoder: Decoder,
}

impl RespCodec {
    /// A codec whose decoder uses `config`.
    pub fn with_config(config: Config) -> Self {
        Self {
            decoder: Decoder::with_config(config),
        }
    }

    /// The decoder (offset, settings).
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }
}

impl tokio_util::codec::Decoder for RespCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        Ok(self.decoder.decode(src)?)
    }
}

impl tokio_util::codec::Encoder<Frame> for RespCodec {
    type Error = CodecError;

    fn encode(&mut self, item: Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        encode(&item, dst);
        Ok(())
    }
}

impl tokio_util::codec::Encoder<&Frame> for RespCodec {
    type Error = CodecError;

    fn encode(&mut self, item: &Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        encode(item, dst);
        Ok(())
    }
}
