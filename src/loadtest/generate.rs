//! Parameter values at run time: generators from the spec, resolved against the
//! dataset's vars and (for `list`) the database, drawing from a per-client RNG.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;

use super::spec::Generator;
use crate::db::TextParam;
use crate::error::fail;

/// A resolved generator. Cheap to share between client threads.
#[derive(Debug, Clone)]
pub enum Source {
    Uniform {
        min: i64,
        max: i64,
    },
    Hot(HotSet),
    Values(Arc<[TextParam]>),
    Constant(TextParam),
    Sequence(Arc<Sequence>),
    /// Index into the script's `let:` values of the current transaction.
    Ref(usize),
}

#[derive(Debug)]
pub struct Sequence {
    min: i64,
    span: u64,
    next: AtomicU64,
}

impl Source {
    /// Resolve `generator`. `seed` fixes derived structure (the hot set); `lets` names the
    /// script's let entries for refs; `list` runs a `list:` query (first column as text).
    pub fn build(
        generator: &Generator,
        seed: u64,
        vars: &[(String, String)],
        lets: &[String],
        what: &str,
        list: &mut dyn FnMut(&str) -> Result<Vec<Option<String>>>,
    ) -> Result<Source> {
        let range = |min: &super::spec::Bound, max: &super::spec::Bound| -> Result<(i64, u64)> {
            let (lo, hi) = (min.resolve(vars, what)?, max.resolve(vars, what)?);
            // Spans of 2^63 and more would overflow the draw arithmetic; no key space is that big.
            match hi.checked_sub(lo) {
                Some(d) if (0..i64::MAX).contains(&d) => Ok((lo, d as u64 + 1)),
                _ => Err(fail(
                    format!("{what}: min {lo} .. max {hi} is not a usable range"),
                    "min must be at most max",
                )),
            }
        };
        Ok(match generator {
            Generator::Uniform { min, max } => {
                let (min, span) = range(min, max)?;
                Source::Uniform {
                    min,
                    max: min + (span - 1) as i64,
                }
            }
            Generator::Hot {
                min,
                max,
                hot_fraction,
                hot_share,
            } => {
                let (min, span) = range(min, max)?;
                Source::Hot(HotSet::new(min, span, *hot_fraction, *hot_share, seed))
            }
            Generator::Sequence { min, max } => {
                let (min, span) = range(min, max)?;
                Source::Sequence(Arc::new(Sequence {
                    min,
                    span,
                    next: AtomicU64::new(0),
                }))
            }
            Generator::Choice { values } => Source::Values(values.clone().into()),
            Generator::Constant { value } => Source::Constant(value.clone()),
            Generator::List { sql } => {
                let sql = crate::values::substitute(sql, vars, what)?;
                let values: Vec<TextParam> = list(&sql)?.into_iter().map(TextParam).collect();
                if values.is_empty() {
                    return Err(fail(
                        format!("{what}: list query returned no rows: {sql}"),
                        "the list generator draws from the rows of its query; check the dataset",
                    ));
                }
                Source::Values(values.into())
            }
            Generator::Ref(name) => match lets.iter().position(|l| l == name) {
                Some(i) => Source::Ref(i),
                None => {
                    return Err(fail(
                        format!("{what}: unknown ref {name:?}"),
                        "define it under let:",
                    ));
                }
            },
        })
    }

    /// One value. `lets` are this transaction's drawn let values.
    pub fn draw(&self, rng: &mut fastrand::Rng, lets: &[TextParam]) -> TextParam {
        match self {
            Source::Uniform { min, max } => text(rng.i64(*min..=*max)),
            Source::Hot(hot) => text(hot.draw(rng)),
            Source::Values(values) => values[rng.usize(..values.len())].clone(),
            Source::Constant(value) => value.clone(),
            Source::Sequence(seq) => {
                let i = seq.next.fetch_add(1, Ordering::Relaxed) % seq.span;
                text(seq.min + i as i64)
            }
            Source::Ref(i) => lets.get(*i).cloned().unwrap_or(TextParam(None)),
        }
    }

    /// The same value as [`Source::draw`] with the same RNG state, appended to `out` as
    /// text (or to the let buffer when `out` is None, while drawing lets); false for NULL.
    pub fn draw_into(
        &self,
        rng: &mut fastrand::Rng,
        lets: &mut LetValues,
        out: Option<&mut Vec<u8>>,
    ) -> bool {
        let (lets, out): (&LetValues, &mut Vec<u8>) = match out {
            Some(out) => (lets, out),
            None => {
                // Lets never reference lets (the spec forbids it): write into their buffer.
                let bytes = &mut lets.bytes;
                return self.draw_plain(rng, bytes);
            }
        };
        match self {
            Source::Ref(i) => match lets.get(*i) {
                Some(bytes) => {
                    out.extend_from_slice(bytes);
                    true
                }
                None => false,
            },
            _ => self.draw_plain(rng, out),
        }
    }

    fn draw_plain(&self, rng: &mut fastrand::Rng, out: &mut Vec<u8>) -> bool {
        let value = |v: &TextParam, out: &mut Vec<u8>| match &v.0 {
            Some(text) => {
                out.extend_from_slice(text.as_bytes());
                true
            }
            None => false,
        };
        match self {
            Source::Uniform { min, max } => push_int(out, rng.i64(*min..=*max)),
            Source::Hot(hot) => push_int(out, hot.draw(rng)),
            Source::Values(values) => return value(&values[rng.usize(..values.len())], out),
            Source::Constant(v) => return value(v, out),
            Source::Sequence(seq) => {
                let i = seq.next.fetch_add(1, Ordering::Relaxed) % seq.span;
                push_int(out, seq.min + i as i64);
            }
            Source::Ref(_) => return false,
        }
        true
    }
}

fn text(value: i64) -> TextParam {
    TextParam(Some(value.to_string()))
}

/// A transaction's `let:` values, drawn once and referenced by its statements; kept in
/// one reused buffer so a transaction allocates nothing.
#[derive(Debug, Default)]
pub struct LetValues {
    bytes: Vec<u8>,
    /// Per let entry: its byte range, or None for NULL.
    ranges: Vec<Option<(usize, usize)>>,
}

impl LetValues {
    /// Draw every let of a script, in order (the same draws as [`Source::draw`] makes).
    pub fn draw(&mut self, sources: &[Source], rng: &mut fastrand::Rng) {
        self.bytes.clear();
        self.ranges.clear();
        for source in sources {
            let start = self.bytes.len();
            let present = source.draw_into(rng, self, None);
            let end = self.bytes.len();
            self.ranges.push(present.then_some((start, end)));
        }
    }

    fn get(&self, i: usize) -> Option<&[u8]> {
        self.ranges
            .get(i)
            .copied()
            .flatten()
            .map(|(a, b)| &self.bytes[a..b])
    }
}

/// Decimal digits of `value` appended to `out`, without going through `fmt`.
fn push_int(out: &mut Vec<u8>, value: i64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut v = value.unsigned_abs();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if value < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[i..]);
}

/// Keys `min .. min+span`; the first `hot` positions of a seeded permutation are hot.
/// The permutation is computed, not stored, so 20M keys cost nothing.
#[derive(Debug, Clone)]
pub struct HotSet {
    min: i64,
    span: u64,
    hot: u64,
    share: f64,
    perm: Permutation,
}

impl HotSet {
    pub fn new(min: i64, span: u64, fraction: f64, share: f64, seed: u64) -> HotSet {
        let hot = ((span as f64 * fraction).round() as u64).clamp(1, span);
        HotSet {
            min,
            span,
            hot,
            share,
            perm: Permutation::new(span, seed),
        }
    }

    pub fn draw(&self, rng: &mut fastrand::Rng) -> i64 {
        let position = if self.hot == self.span || rng.f64() < self.share {
            rng.u64(..self.hot)
        } else {
            rng.u64(self.hot..self.span)
        };
        self.min + self.perm.apply(position) as i64
    }

    /// Whether `key` is one of the hot keys.
    pub fn is_hot(&self, key: i64) -> bool {
        let Some(offset) = key.checked_sub(self.min).filter(|o| *o >= 0) else {
            return false;
        };
        (offset as u64) < self.span && self.perm.invert(offset as u64) < self.hot
    }

    pub fn hot_keys(&self) -> u64 {
        self.hot
    }
}

/// A pseudo-random bijection of `0..n`: a 4-round Feistel network over the smallest
/// even number of bits covering n, with cycle walking back into range.
#[derive(Debug, Clone)]
struct Permutation {
    n: u64,
    half_bits: u32,
    keys: [u64; 4],
}

impl Permutation {
    fn new(n: u64, seed: u64) -> Permutation {
        let bits = 64 - n.saturating_sub(1).leading_zeros();
        let mut state = seed;
        Permutation {
            n,
            half_bits: bits.div_ceil(2).max(1),
            keys: [0; 4].map(|_| splitmix64(&mut state)),
        }
    }

    fn mask(&self) -> u64 {
        (1u64 << self.half_bits) - 1
    }

    fn round(&self, value: u64, key: u64) -> u64 {
        let mut state = value ^ key;
        splitmix64(&mut state) & self.mask()
    }

    fn encrypt(&self, x: u64) -> u64 {
        let (mut left, mut right) = (x >> self.half_bits, x & self.mask());
        for key in self.keys {
            (left, right) = (right, left ^ self.round(right, key));
        }
        (left << self.half_bits) | right
    }

    fn decrypt(&self, x: u64) -> u64 {
        let (mut left, mut right) = (x >> self.half_bits, x & self.mask());
        for key in self.keys.iter().rev() {
            (left, right) = (right ^ self.round(left, *key), left);
        }
        (left << self.half_bits) | right
    }

    /// Cycle walking: a bijection on 0..4n restricted to 0..n stays a bijection.
    fn apply(&self, mut x: u64) -> u64 {
        loop {
            x = self.encrypt(x);
            if x < self.n {
                return x;
            }
        }
    }

    fn invert(&self, mut x: u64) -> u64 {
        loop {
            x = self.decrypt(x);
            if x < self.n {
                return x;
            }
        }
    }
}

/// SplitMix64 step: a well-mixed 64-bit value per call, used to derive keys and seeds.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seed for one stream from a base seed and a path (run, client, ...): streams of
/// neighbouring clients do not overlap.
pub fn derive_seed(base: u64, path: &[u64]) -> u64 {
    let mut state = base;
    for part in path {
        state = splitmix64(&mut state) ^ part.wrapping_mul(0xD605_BBB5_8C8A_BBBB);
    }
    splitmix64(&mut state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_a_bijection() {
        for n in [1, 2, 3, 7, 1000, 1025] {
            let perm = Permutation::new(n, 42);
            let mut seen: Vec<u64> = (0..n).map(|i| perm.apply(i)).collect();
            assert!((0..n).all(|i| perm.invert(perm.apply(i)) == i));
            seen.sort_unstable();
            assert_eq!(seen, (0..n).collect::<Vec<_>>(), "n = {n}");
        }
    }

    fn parse(yaml: &str) -> Generator {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn draw_into_gives_the_same_values_as_draw() {
        let list: Vec<Option<String>> = vec![Some("a".into()), None, Some("ü".into())];
        let sources: Vec<Source> = [
            "uniform: {min: -1000000, max: 1000000}",
            "hot: {min: 1, max: 99999}",
            "list: {sql: x}",
            "choice: {values: [x, 7]}",
            "constant: {value: 5}",
        ]
        .iter()
        .map(|y| Source::build(&parse(y), 3, &[], &[], "t", &mut |_| Ok(list.clone())).unwrap())
        .collect();
        let (mut a, mut b) = (fastrand::Rng::with_seed(9), fastrand::Rng::with_seed(9));
        let mut lets = LetValues::default();
        lets.draw(&sources[..1], &mut b);
        let first = sources[0].draw(&mut a, &[]);
        let reference = Source::Ref(0);
        for _ in 0..2000 {
            for s in &sources {
                let mut out = Vec::new();
                let present = s.draw_into(&mut b, &mut lets, Some(&mut out));
                let expected = s.draw(&mut a, &[]);
                assert_eq!(present.then(|| String::from_utf8(out).unwrap()), expected.0);
            }
        }
        let mut out = Vec::new();
        assert!(reference.draw_into(&mut b, &mut lets, Some(&mut out)));
        assert_eq!(Some(String::from_utf8(out).unwrap()), first.0);
        let mut digits = Vec::new();
        for v in [0, -1, 9, 10, i64::MIN, i64::MAX] {
            digits.clear();
            push_int(&mut digits, v);
            assert_eq!(String::from_utf8(digits.clone()).unwrap(), v.to_string());
        }
    }

    #[test]
    fn sequence_wraps_and_uniform_stays_in_range() {
        let spec = parse("sequence: {min: 5, max: 7}");
        let seq = Source::build(&spec, 1, &[], &[], "t", &mut |_| Ok(vec![])).unwrap();
        let mut rng = fastrand::Rng::with_seed(1);
        let got: Vec<_> = (0..4).map(|_| seq.draw(&mut rng, &[]).0.unwrap()).collect();
        assert_eq!(got, ["5", "6", "7", "5"]);
        let spec = parse("uniform: {min: -2, max: 2}");
        let uni = Source::build(&spec, 1, &[], &[], "t", &mut |_| Ok(vec![])).unwrap();
        for _ in 0..1000 {
            let v: i64 = uni.draw(&mut rng, &[]).0.unwrap().parse().unwrap();
            assert!((-2..=2).contains(&v));
        }
    }
}
