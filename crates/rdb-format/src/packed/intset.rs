//! Intsets: the reader (non-empty, ascending, one width) and the writer.

use super::{R, Raw, err, get, le, sext};

/// Walks an intset, calling `f` for each member, with the checks of Redis'
/// `intsetValidateIntegrity` (deep): the encoding, the size, not empty, strictly ascending.
pub(crate) fn intset(b: &[u8], mut f: impl FnMut(Raw) -> R<()>) -> R<()> {
    const W: &str = "intset";
    let header = get(b, 0, 8, W)?;
    let width = le(&header[0..4]) as usize;
    let count = le(&header[4..8]) as usize;
    if !matches!(width, 2 | 4 | 8) {
        return err(W, 0, format!("bad integer width {width}"));
    }
    match count.checked_mul(width).and_then(|n| n.checked_add(8)) {
        Some(n) if n == b.len() => {}
        _ => {
            return err(
                W,
                4,
                format!(
                    "{count} members of {width} bytes do not fill {} bytes",
                    b.len()
                ),
            );
        }
    }
    if count == 0 {
        return err(W, 4, "an empty intset");
    }
    let mut prev = None;
    for i in 0..count {
        let at = 8 + i * width;
        let v = sext(le(&b[at..at + width]), (width * 8) as u32);
        if prev.is_some_and(|p| v <= p) {
            let why = if prev == Some(v) {
                format!("member {v} twice")
            } else {
                format!(
                    "member {v} after {} (not ascending)",
                    prev.unwrap_or_default()
                )
            };
            return err(W, at, why);
        }
        prev = Some(v);
        f(Raw::Int(v))?;
    }
    Ok(())
}

/// An intset of `v` (sorted here) in the narrowest width that holds every element.
pub(crate) fn encode(mut v: Vec<i64>) -> Vec<u8> {
    v.sort_unstable();
    let width: usize = if v.iter().all(|&x| i16::try_from(x).is_ok()) {
        2
    } else if v.iter().all(|&x| i32::try_from(x).is_ok()) {
        4
    } else {
        8
    };
    let mut out = Vec::with_capacity(8 + v.len() * width);
    out.extend_from_slice(&(width as u32).to_le_bytes());
    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    for x in v {
        out.extend_from_slice(&x.to_le_bytes()[..width]);
    }
    out
}
