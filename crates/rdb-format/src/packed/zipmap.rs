//! Zipmaps (hashes of RDB 1–3): the reader.

use super::{R, Raw, err, get, le};

/// Walks a zipmap, calling `f` for each (field, value), with the checks of Redis'
/// `zipmapValidateIntegrity` (deep): the end byte, every length inside the blob, not empty, and
/// the count byte (when below 254) against the pairs.
pub(crate) fn zipmap(b: &[u8], mut f: impl FnMut(Raw, Raw) -> R<()>) -> R<()> {
    const W: &str = "zipmap";
    let mut pos = 1;
    let zmlen = usize::from(get(b, 0, 1, W)?[0]);
    if b.len() < 2 || b[b.len() - 1] != 0xFF {
        return err(W, b.len().saturating_sub(1), "no end byte (0xff)");
    }
    let read_len = |pos: &mut usize| -> R<Option<usize>> {
        let first = get(b, *pos, 1, W)?[0];
        match first {
            0xFF => Ok(None),
            254 => {
                let x = get(b, *pos + 1, 4, W)?;
                *pos += 5;
                Ok(Some(le(x) as usize))
            }
            253 => {
                // 253 is reserved; Redis never writes it as a length.
                err(W, *pos, "reserved length byte 253")
            }
            n => {
                *pos += 1;
                Ok(Some(usize::from(n)))
            }
        }
    };
    let mut count = 0usize;
    loop {
        let Some(klen) = read_len(&mut pos)? else {
            if pos + 1 != b.len() {
                return err(W, pos, "end marker before the end of the blob");
            }
            break;
        };
        get(b, pos, klen, W)?;
        let field = Raw::Range(pos, pos + klen);
        pos += klen;
        let Some(vlen) = read_len(&mut pos)? else {
            return err(W, pos, "field without a value");
        };
        let free = usize::from(get(b, pos, 1, W)?[0]);
        pos += 1;
        get(b, pos, vlen + free, W)?;
        let value = Raw::Range(pos, pos + vlen);
        pos += vlen + free;
        if pos > b.len() - 1 {
            return err(W, pos, "pair runs past the end byte");
        }
        count += 1;
        f(field, value)?;
    }
    if count == 0 {
        return err(W, 0, "an empty zipmap");
    }
    if zmlen < 254 && zmlen != count {
        return err(
            W,
            0,
            format!("count byte says {zmlen} pairs, the zipmap holds {count}"),
        );
    }
    Ok(())
}
