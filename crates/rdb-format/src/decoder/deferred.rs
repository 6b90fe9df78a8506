//! A big collection's duplicate check done beside its decoder rather than inside it.
//!
//! A set, hash or sorted set of more than [`SEEN_FIRST`] members needs a duplicate table far
//! bigger than the caches: each member's check is a cache miss, about half of what decoding
//! such a key costs. A decoder told to ([`Decoder::defer_member_checks`], as the pipeline's
//! batches are) still hashes each member, but hands the hashes over, a decoding step at a
//! time ([`Deferred`]), to a [`MemberCheck`] that may run on another thread; whoever reads
//! the decoder holds back the items of a step until its members were checked
//! ([`Decoder::deferred_issued`]), and on a duplicate asks the decoder for the error
//! ([`Decoder::deferred_dup`]): the same error, after the same items, as a decoder that
//! checks them itself.

use super::*;

/// What a decoder hands to the duplicate check of its big collections, in order.
#[derive(Debug)]
pub(crate) enum Deferred {
    /// A collection starts that announces this many members (up to the limit): a fresh
    /// table, sized as a decoder would size its own.
    Start(usize),
    /// The hashes of the members of one decoding step, in file order.
    Step(Vec<u128>),
}

/// The outcome of one [`Deferred::Step`].
#[derive(Debug)]
pub(crate) struct Checked {
    /// The index in the step of the first member seen before (nothing after it was checked).
    pub(crate) dup: Option<usize>,
    /// The collection went past the duplicate check's limit in this step: its check is
    /// partial from there on ([`Decoder::partial_checks`]).
    pub(crate) partial: bool,
    /// The step's hashes, for the decoder to hash another step into
    /// ([`Decoder::recycle_step`]).
    pub(crate) spent: Vec<u128>,
}

/// The duplicate check of the big collections of one decoder, as the decoder would do it:
/// the same table, the same limit.
#[derive(Debug)]
pub(crate) struct MemberCheck {
    seen: Seen,
    limit: usize,
}

impl MemberCheck {
    /// A check with the decoder's [`Config::dup_check_limit`].
    pub(crate) fn new(config: &Config) -> Self {
        Self {
            seen: Seen::default(),
            limit: config.dup_check_limit,
        }
    }

    /// Lets the last collection's table go.
    pub(crate) fn release(&mut self) {
        self.seen = Seen::default();
    }

    /// Takes the next message; a step's outcome comes back.
    pub(crate) fn take(&mut self, msg: Deferred) -> Option<Checked> {
        match msg {
            Deferred::Start(n) => {
                // the last collection's table goes before the next one is made
                self.release();
                self.seen = Seen::with_capacity(n).with_helper();
                None
            }
            Deferred::Step(hashes) => {
                let mut out = self.step(&hashes);
                out.spent = hashes;
                Some(out)
            }
        }
    }

    fn step(&mut self, hashes: &[u128]) -> Checked {
        let mut out = Checked {
            dup: None,
            partial: false,
            spent: Vec::new(),
        };
        // each member's line is loaded some members ahead of its turn
        for &h in hashes.iter().take(TOUCH_AHEAD) {
            self.seen.touch(h);
        }
        for (i, &h) in hashes.iter().enumerate() {
            if let Some(&ahead) = hashes.get(i + TOUCH_AHEAD) {
                self.seen.touch(ahead);
            }
            let (dup, partial) = self.seen.check(h, self.limit);
            out.partial |= partial;
            if dup {
                out.dup = Some(i);
                break;
            }
        }
        out
    }
}

/// Whether a collection of `kind` that announces `n` members (up to the limit) has its
/// duplicate check done elsewhere, when its decoder defers them (`defer`).
pub(super) fn defers(defer: bool, kind: SeqKind, n: u64) -> bool {
    defer
        && kind.checks_members()
        && !matches!(kind, SeqKind::StreamNodes(_))
        && n > SEEN_FIRST as u64
}

/// What a decoder keeps of a step whose members are being checked elsewhere, to report a
/// duplicate among them as it would have reported it itself.
#[derive(Debug)]
pub(super) struct Kept {
    /// The step's number ([`Decoder::deferred_issued`] before it).
    step: u64,
    /// The input the step read, and its file offset.
    chunk: Bytes,
    base: u64,
    /// The kind of collection (whose elements the step parsed from `chunk`'s start, one
    /// member and one hash each).
    kind: SeqKind,
    ctx: Context,
}

/// Spent steps' vectors a decoder keeps for the next steps: as many as may be checked while
/// it decodes the next (the pipeline's lead, 8 steps) and a few more.
pub(crate) const SPARE_STEPS: usize = 12;

/// A step of a collection whose members are checked elsewhere, while it is decoded.
#[derive(Debug)]
pub(super) struct DeferredStep {
    pub(super) hashes: Vec<u128>,
}

impl Decoder {
    /// Hands the duplicate check of big collections (more than [`SEEN_FIRST`] members) to
    /// whoever reads this decoder ([`Deferred`]), unless damaged keys are skipped
    /// ([`Recovery::Skip`]): the reader holds back what comes after each step until its
    /// members were checked.
    pub(crate) fn defer_member_checks(&mut self) {
        self.defer = self.config.recovery != Recovery::Skip && !self.walk;
    }

    /// Whether big collections' duplicate checks are handed over ([`Self::defer_member_checks`]).
    #[cfg(all(test, feature = "mmap"))]
    pub(crate) fn defers_member_checks(&self) -> bool {
        self.defer
    }

    /// Whether messages for the duplicate check wait to be taken: the last call returned
    /// `Ok(None)` for them to be, not for more input.
    pub(crate) fn has_deferred(&self) -> bool {
        !self.deferred.is_empty()
    }

    /// The messages for the duplicate check issued since the last call, in order.
    pub(crate) fn take_deferred(&mut self) -> std::collections::vec_deque::Drain<'_, Deferred> {
        self.deferred.drain(..)
    }

    /// How many steps' members were handed over to be checked: an item that comes out now
    /// may be given out once that many steps were checked without a duplicate.
    pub(crate) fn deferred_issued(&self) -> u64 {
        self.issued
    }

    /// Takes back a checked step's hashes ([`Checked::spent`]): the next steps hash into
    /// them rather than into fresh vectors. (Each step's vector was allocated by the
    /// decoder's thread and freed by the thread that checked it: memory going back and forth
    /// between threads' heaps, and pages the decoder faulted in again.)
    pub(crate) fn recycle_step(&mut self, spent: Vec<u128>) {
        if self.spare_steps.len() < SPARE_STEPS && spent.capacity() > 0 {
            self.spare_steps.push(spent);
        }
    }

    /// How many spent steps' vectors wait to be used again.
    #[cfg(test)]
    pub(crate) fn spare_steps(&self) -> usize {
        self.spare_steps.len()
    }

    /// An empty vector for a step of `n` members' hashes: a spent one when there is one.
    pub(super) fn step_hashes(&mut self, n: usize) -> Vec<u128> {
        match self.spare_steps.pop() {
            Some(mut v) => {
                v.clear();
                v.reserve(n);
                v
            }
            None => Vec::with_capacity(n),
        }
    }

    /// The steps before `n` were checked: what was kept to report their duplicates goes.
    pub(crate) fn deferred_cleared(&mut self, n: u64) {
        while self.kept.front().is_some_and(|k| k.step < n) {
            self.kept.pop_front();
        }
    }

    /// The error for the duplicate found at `index` of step `step`: the one this decoder
    /// gives when it checks its members itself. The decoder is done after it.
    pub(crate) fn deferred_dup(&mut self, step: u64, index: usize) -> Error {
        let e = match self.kept.iter().find(|k| k.step == step) {
            Some(k) => self
                .nth_dup_error(k.kind, &k.chunk, k.base, index)
                .with_context(&k.ctx),
            None => Error::new(
                ErrorKind::Corrupt {
                    what: "duplicate check",
                    why: format!("no checked step {step}"),
                },
                self.pos,
            ),
        };
        self.kept.clear();
        self.out.clear();
        self.state = State::Failed(e.clone());
        e
    }

    /// Hands a step's member hashes over to be checked, keeping what its error would need.
    pub(super) fn issue_step(
        &mut self,
        step: DeferredStep,
        chunk: &Bytes,
        base: u64,
        kind: SeqKind,
    ) {
        if step.hashes.is_empty() {
            return;
        }
        self.kept.push_back(Kept {
            step: self.issued,
            chunk: chunk.clone(),
            base,
            kind,
            ctx: self.ctx.clone(),
        });
        self.deferred.push_back(Deferred::Step(step.hashes));
        self.issued += 1;
    }
}
