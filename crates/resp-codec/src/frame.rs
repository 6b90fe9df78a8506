//! The RESP2/RESP3 frame.

use bytes::Bytes;

/// One RESP2/RESP3 frame. Strings are [`Bytes`] slices of the decoder's input (no copy).
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `+OK`
    SimpleString(Bytes),
    /// `-ERR message`
    Error(Bytes),
    /// `:42`
    Integer(i64),
    /// `$3 foo`
    BulkString(Bytes),
    /// `*n` followed by n frames.
    Array(Vec<Self>),
    /// RESP2 null bulk string, `$-1`.
    NullBulk,
    /// RESP2 null array, `*-1`.
    NullArray,
    /// RESP3 null, `_`.
    Null,
    /// `#t` / `#f`
    Boolean(bool),
    /// `,3.14`, `,inf`, `,-inf`, `,nan`
    Double(f64),
    /// `(3492890328409238509324850943850943825024385`
    BigNumber(Bytes),
    /// `!n` followed by an error message of n bytes.
    BulkError(Bytes),
    /// `=n` followed by `fmt:text` (n counts the format and the colon).
    Verbatim {
        /// The 3-byte format, such as `txt` or `mkd`.
        format: [u8; 3],
        /// The text after `fmt:`.
        text: Bytes,
    },
    /// `%n` followed by n key/value pairs.
    Map(Vec<(Self, Self)>),
    /// `~n` followed by n frames.
    Set(Vec<Self>),
    /// `|n` followed by n key/value pairs, then the frame they describe.
    Attribute {
        /// The attribute pairs.
        attributes: Vec<(Self, Self)>,
        /// The frame that follows them.
        data: Box<Self>,
    },
    /// `>n` followed by n frames (out-of-band data).
    Push(Vec<Self>),
    /// An inline command (`SET k v` and a line end), as `redis-cli` and telnet send; only
    /// decoded when [`Config::inline`](crate::Config::inline) is on.
    Inline(Vec<Bytes>),
}

impl Frame {
    /// A command as a RESP array of bulk strings.
    ///
    /// ```
    /// let f = resp_codec::Frame::command(["SET", "k", "v"]);
    /// assert_eq!(f.as_command().unwrap().len(), 3);
    /// ```
    pub fn command<I, A>(args: I) -> Self
    where
        I: IntoIterator<Item = A>,
        A: AsRef<[u8]>,
    {
        Self::Array(
            args.into_iter()
                .map(|a| Self::BulkString(Bytes::copy_from_slice(a.as_ref())))
                .collect(),
        )
    }

    /// The argument vector when this frame is a command: an array of bulk strings (or simple
    /// strings), or an inline command.
    pub fn as_command(&self) -> Option<Vec<Bytes>> {
        match self {
            Self::Inline(args) => Some(args.clone()),
            Self::Array(items) => items
                .iter()
                .map(|f| match f {
                    Self::BulkString(b) | Self::SimpleString(b) => Some(b.clone()),
                    _ => None,
                })
                .collect(),
            _ => None,
        }
    }

    /// Like [`as_command`](Self::as_command), consuming the frame; gives it back when it is
    /// not a command.
    pub fn into_command(self) -> Result<Vec<Bytes>, Self> {
        match self {
            Self::Inline(args) => Ok(args),
            Self::Array(items)
                if items
                    .iter()
                    .all(|f| matches!(f, Self::BulkString(_) | Self::SimpleString(_))) =>
            {
                Ok(items
                    .into_iter()
                    .map(|f| match f {
                        Self::BulkString(b) | Self::SimpleString(b) => b,
                        _ => Bytes::new(),
                    })
                    .collect())
            }
            other => Err(other),
        }
    }

    /// True for the error frames (`-` and `!`).
    pub fn is_error(&self) -> bool {
        matches!(self, Self::Error(_) | Self::BulkError(_))
    }

    /// True for the three null forms.
    pub fn is_null(&self) -> bool {
        matches!(self, Self::Null | Self::NullBulk | Self::NullArray)
    }

    /// Equality as a round trip needs it: doubles compare bit for bit, except that every NaN
    /// equals every NaN (`==` says NaN differs from itself and 0.0 equals -0.0).
    ///
    /// ```
    /// use resp_codec::Frame;
    /// assert!(Frame::Double(f64::NAN).identical(&Frame::Double(f64::NAN)));
    /// assert!(!Frame::Double(0.0).identical(&Frame::Double(-0.0)));
    /// ```
    pub fn identical(&self, other: &Self) -> bool {
        fn pairs(x: &[(Frame, Frame)], y: &[(Frame, Frame)]) -> bool {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((a, b), (c, d))| a.identical(c) && b.identical(d))
        }
        match (self, other) {
            (Self::Double(x), Self::Double(y)) => {
                x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
            }
            (Self::Array(x), Self::Array(y))
            | (Self::Set(x), Self::Set(y))
            | (Self::Push(x), Self::Push(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(a, b)| a.identical(b))
            }
            (Self::Map(x), Self::Map(y)) => pairs(x, y),
            (
                Self::Attribute {
                    attributes: x,
                    data: dx,
                },
                Self::Attribute {
                    attributes: y,
                    data: dy,
                },
            ) => pairs(x, y) && dx.identical(dy),
            _ => self == other,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Args {
    /// Ranges of `raw`.
    Ranges(Vec<(usize, usize)>),
    /// Unescaped inline arguments.
    Owned(Vec<Bytes>),
}

/// A command as it arrived: the frame's bytes and where each argument lies in them. Arguments
/// are borrowed as `&[u8]` or sliced out as `Bytes` without copying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub(crate) raw: Bytes,
    pub(crate) args: Args,
}

impl Command {
    /// A command made from its arguments (encoded as an array of bulk strings), as if it had
    /// been received.
    ///
    /// ```
    /// let c = resp_codec::Command::from_args(["SET", "k", "v"]);
    /// assert_eq!(&c.raw()[..], b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n");
    /// assert_eq!(c.arg(1), Some(&b"k"[..]));
    /// ```
    pub fn from_args<I, A>(args: I) -> Self
    where
        I: IntoIterator<Item = A>,
        I::IntoIter: ExactSizeIterator,
        A: AsRef<[u8]>,
    {
        let mut raw = bytes::BytesMut::new();
        let mut ranges = Vec::new();
        let args = args.into_iter();
        crate::encode::header(&mut raw, b'*', args.len());
        for a in args {
            let a = a.as_ref();
            crate::encode::header(&mut raw, b'$', a.len());
            ranges.push((raw.len(), raw.len() + a.len()));
            raw.extend_from_slice(a);
            raw.extend_from_slice(b"\r\n");
        }
        Self {
            raw: raw.freeze(),
            args: Args::Ranges(ranges),
        }
    }

    /// The bytes of the whole frame, exactly as received.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// The number of arguments, the command name included.
    pub fn len(&self) -> usize {
        match &self.args {
            Args::Ranges(r) => r.len(),
            Args::Owned(a) => a.len(),
        }
    }

    /// True for a command with no arguments at all (`*0`).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Argument `i` (0 is the command name).
    pub fn arg(&self, i: usize) -> Option<&[u8]> {
        match &self.args {
            Args::Ranges(r) => r.get(i).map(|&(s, e)| &self.raw[s..e]),
            Args::Owned(a) => a.get(i).map(|b| &b[..]),
        }
    }

    /// Argument `i` as `Bytes` sharing the frame's memory.
    pub fn arg_bytes(&self, i: usize) -> Option<Bytes> {
        match &self.args {
            Args::Ranges(r) => r.get(i).map(|&(s, e)| self.raw.slice(s..e)),
            Args::Owned(a) => a.get(i).cloned(),
        }
    }

    /// Every argument, in order.
    pub fn args(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        (0..self.len()).map(|i| self.arg(i).unwrap_or_default())
    }

    /// Every argument as `Bytes` sharing the frame's memory.
    pub fn to_vec(&self) -> Vec<Bytes> {
        (0..self.len())
            .map(|i| self.arg_bytes(i).unwrap_or_default())
            .collect()
    }

    /// True when the command name equals `name`, ignoring ASCII case.
    pub fn is(&self, name: &str) -> bool {
        self.arg(0)
            .is_some_and(|a| a.eq_ignore_ascii_case(name.as_bytes()))
    }
}
