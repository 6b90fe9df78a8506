//! Module values and module key metadata (Redis 8.6+ KEY_META): their opcode streams.

use super::*;

/// One class of a KEY_META block as found in the input.
pub(super) struct RawMeta {
    pub(super) spec: u32,
    pub(super) items: Vec<RawModuleItem>,
}

pub(super) enum RawModuleItem {
    Uint(u64),
    Sint(u64),
    Float(f32),
    Double(f64),
    Str(SRef),
}

/// The most classes a KEY_META block may hold (Redis refuses more).
pub(super) const KEY_META_MAX_CLASSES: u64 = 7;

/// A KEY_META block after its opcode: class count, then per class its spec and items.
pub(super) fn key_meta_block(c: &mut Cur<'_>) -> P<Vec<RawMeta>> {
    let at = c.p;
    let n = c.len()?;
    if n > KEY_META_MAX_CLASSES {
        return c.bad(
            ErrorKind::Corrupt {
                what: "key metadata",
                why: format!("{n} classes (at most {KEY_META_MAX_CLASSES})"),
            },
            at,
        );
    }
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let spec = u32::from_le_bytes(c.array()?);
        let mut items = Vec::new();
        loop {
            let at = c.p;
            items.push(match c.len()? {
                0 => break,
                1 => RawModuleItem::Sint(c.len()?),
                2 => RawModuleItem::Uint(c.len()?),
                3 => RawModuleItem::Float(f32::from_le_bytes(c.array()?)),
                4 => RawModuleItem::Double(f64::from_le_bytes(c.array()?)),
                5 => RawModuleItem::Str(c.string()?),
                op => {
                    return c.bad(
                        ErrorKind::Corrupt {
                            what: "key metadata",
                            why: format!("unknown module opcode {op}"),
                        },
                        at,
                    );
                }
            });
        }
        out.push(RawMeta { spec, items });
    }
    Ok(out)
}

/// The length of the KEY_META block (after its opcode) at the start of `b`, for DUMP payloads.
pub(crate) fn key_meta_len(b: &[u8]) -> std::result::Result<usize, (ErrorKind, usize)> {
    let mut c = Cur::new(b, u64::MAX);
    match key_meta_block(&mut c) {
        Ok(_) => Ok(c.p),
        Err(Stop::More) => Err((
            ErrorKind::Truncated {
                what: "key metadata",
            },
            b.len(),
        )),
        Err(Stop::Bad(kind, at)) => Err((kind, at)),
    }
}

pub(super) fn skip_module_body(c: &mut Cur<'_>) -> P<()> {
    loop {
        let at = c.p;
        match c.len()? {
            0 => return Ok(()),
            1 | 2 => {
                c.len()?;
            }
            3 => {
                c.take(4)?;
            }
            4 => {
                c.take(8)?;
            }
            5 => {
                c.string()?;
            }
            op => {
                return c.bad(
                    ErrorKind::Corrupt {
                        what: "module value",
                        why: format!("unknown module opcode {op}"),
                    },
                    at,
                );
            }
        }
    }
}

impl Decoder {
    pub(super) fn key_metas(
        &self,
        raw: Vec<RawMeta>,
        chunk: &Bytes,
        base: u64,
    ) -> Result<Vec<KeyMeta>> {
        raw.into_iter()
            .map(|m| {
                let (class, version, flags) = KeyMeta::parse_spec(m.spec);
                let items = m
                    .items
                    .into_iter()
                    .map(|i| {
                        Ok(match i {
                            RawModuleItem::Uint(v) => ModuleItem::Uint(v),
                            RawModuleItem::Sint(v) => ModuleItem::Sint(v as i64),
                            RawModuleItem::Float(v) => ModuleItem::Float(v),
                            RawModuleItem::Double(v) => ModuleItem::Double(v),
                            RawModuleItem::Str(s) => {
                                ModuleItem::String(self.mat_bytes(chunk, base, s)?)
                            }
                        })
                    })
                    .collect::<Result<_>>()?;
                Ok(KeyMeta {
                    class,
                    version,
                    allow_ignore: flags & 1 != 0,
                    reserved_flags: flags & 6,
                    items,
                })
            })
            .collect()
    }
}
