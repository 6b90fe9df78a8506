//! Splitting a line into arguments the way Redis does for inline commands and config /
//! manifest lines (`sdssplitargs`), and quoting arguments so they split back.

/// One argument found in a line: a range of the line when it needed no unescaping, the
/// unescaped bytes otherwise.
#[derive(Debug)]
pub(crate) enum Piece {
    Range(usize, usize),
    Owned(Vec<u8>),
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Splits `line` into pieces. `Err(())` on unbalanced quotes or a closing quote not
/// followed by a space.
pub(crate) fn split_pieces(line: &[u8], out: &mut Vec<Piece>) -> Result<(), ()> {
    let mut i = 0;
    let n = line.len();
    loop {
        while i < n && is_space(line[i]) {
            i += 1;
        }
        if i == n {
            return Ok(());
        }
        let start = i;
        // fast path: a plain token with no quotes
        while i < n && !is_space(line[i]) && line[i] != b'"' && line[i] != b'\'' {
            i += 1;
        }
        if i == n || is_space(line[i]) {
            out.push(Piece::Range(start, i));
            continue;
        }
        // a token with quotes somewhere: unescape into a buffer
        let mut cur = line[start..i].to_vec();
        loop {
            if i == n || is_space(line[i]) {
                break;
            }
            match line[i] {
                b'"' => {
                    i += 1;
                    loop {
                        if i == n {
                            return Err(());
                        }
                        match line[i] {
                            b'\\'
                                if i + 3 < n
                                    && line[i + 1] == b'x'
                                    && hex(line[i + 2]).is_some()
                                    && hex(line[i + 3]).is_some() =>
                            {
                                let (Some(h), Some(l)) = (hex(line[i + 2]), hex(line[i + 3]))
                                else {
                                    unreachable!("checked in the guard")
                                };
                                cur.push(h * 16 + l);
                                i += 4;
                            }
                            b'\\' if i + 1 < n => {
                                cur.push(match line[i + 1] {
                                    b'n' => b'\n',
                                    b'r' => b'\r',
                                    b't' => b'\t',
                                    b'b' => 0x08,
                                    b'a' => 0x07,
                                    c => c,
                                });
                                i += 2;
                            }
                            b'"' => {
                                i += 1;
                                // the closing quote must end the argument
                                if i < n && !is_space(line[i]) {
                                    return Err(());
                                }
                                break;
                            }
                            c => {
                                cur.push(c);
                                i += 1;
                            }
                        }
                    }
                    break;
                }
                b'\'' => {
                    i += 1;
                    loop {
                        if i == n {
                            return Err(());
                        }
                        match line[i] {
                            b'\\' if i + 1 < n && line[i + 1] == b'\'' => {
                                cur.push(b'\'');
                                i += 2;
                            }
                            b'\'' => {
                                i += 1;
                                if i < n && !is_space(line[i]) {
                                    return Err(());
                                }
                                break;
                            }
                            c => {
                                cur.push(c);
                                i += 1;
                            }
                        }
                    }
                    break;
                }
                c => {
                    cur.push(c);
                    i += 1;
                }
            }
        }
        out.push(Piece::Owned(cur));
    }
}

/// Splits a line into arguments as Redis does for inline commands, `redis.conf` and the AOF
/// manifest: whitespace separates arguments; `"…"` understands `\n \r \t \b \a \\ \" \xHH`;
/// `'…'` understands `\'`; a closing quote must be followed by whitespace or the end.
///
/// ```
/// let args = resp_codec::split_args(br#"file "my file.aof" seq 1"#).unwrap();
/// assert_eq!(args, vec![b"file".to_vec(), b"my file.aof".to_vec(), b"seq".to_vec(), b"1".to_vec()]);
/// assert!(resp_codec::split_args(br#"file "open"#).is_none());
/// ```
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut pieces = Vec::new();
    split_pieces(line, &mut pieces).ok()?;
    Some(
        pieces
            .into_iter()
            .map(|p| match p {
                Piece::Range(s, e) => line[s..e].to_vec(),
                Piece::Owned(v) => v,
            })
            .collect(),
    )
}

/// True when `arg` must be quoted to survive [`split_args`], or, as the first word of an
/// inline command, to not be taken for a RESP type byte.
pub fn needs_quotes(arg: &[u8]) -> bool {
    arg.is_empty()
        || b"+-:$*_#,(!=%~|>".contains(&arg[0])
        || arg.iter().any(|&b| {
            is_space(b) || b == b'"' || b == b'\'' || b == b'\\' || !(0x21..0x7f).contains(&b)
        })
}

/// Appends `arg` to `out` so that [`split_args`] reads it back: as is when it can, else in
/// double quotes with escapes.
///
/// ```
/// let mut line = Vec::new();
/// resp_codec::quote_arg(b"a b\n", &mut line);
/// assert_eq!(line, br#""a b\n""#);
/// assert_eq!(resp_codec::split_args(&line).unwrap(), vec![b"a b\n".to_vec()]);
/// ```
pub fn quote_arg(arg: &[u8], out: &mut Vec<u8>) {
    if !needs_quotes(arg) {
        out.extend_from_slice(arg);
        return;
    }
    out.push(b'"');
    for &b in arg {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x07 => out.extend_from_slice(b"\\a"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x20..0x7f => out.push(b),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'x',
                    HEX[(b >> 4) as usize],
                    HEX[(b & 15) as usize],
                ]);
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_examples() {
        let a = split_args(b"  set  \"a\\x41\\n\" 'it\\'s'  x\"y z\"  ").unwrap();
        assert_eq!(
            a,
            vec![
                b"set".to_vec(),
                b"aA\n".to_vec(),
                b"it's".to_vec(),
                b"xy z".to_vec()
            ]
        );
        assert!(split_args(b"\"a\"b").is_none());
        assert!(split_args(b"'a").is_none());
        assert_eq!(split_args(b"").unwrap(), Vec::<Vec<u8>>::new());
    }

    #[test]
    fn quote_round_trips_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        let mut line = Vec::new();
        quote_arg(&all, &mut line);
        line.push(b' ');
        quote_arg(b"", &mut line);
        assert_eq!(split_args(&line).unwrap(), vec![all, Vec::new()]);
    }
}
