//! What the classifier sees of a name: the name split at its public suffix, the lexical
//! figures of the registrable label, a character Markov model of benign labels, and the hashed
//! character n-grams.

/// Symbols of a label: 0 is the boundary (start or end), then `a`–`z`, `0`–`9`, `-`, `_`.
pub(crate) const ALPHABET: usize = 39;

/// Longest name in the DNS (RFC 1035, without the root dot).
const MAX_NAME: usize = 253;
/// Longest label in the DNS.
const MAX_LABEL: usize = 63;

/// The lexical figures, in the order of [`Lexical::values`] and of the model file.
pub const LEXICAL_NAMES: [&str; LEXICAL_COUNT] = [
    "length",
    "entropy",
    "digit_ratio",
    "vowel_ratio",
    "longest_consonant_run",
    "hex_ratio",
    "distinct_ratio",
    "digit_letter_switches",
    "markov1_mean_log_prob",
    "markov2_mean_log_prob",
    "markov2_total_log_prob",
    "benign_4gram_coverage",
    "benign_5gram_coverage",
    "subdomain_labels",
    "subdomain_length",
    "idn",
    "benign_6gram_coverage",
];

/// How many lexical figures there are.
pub const LEXICAL_COUNT: usize = 17;

/// Why a line is not a name the classifier can score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Invalid {
    /// Nothing but white space.
    Empty,
    /// Longer than 253 characters.
    TooLong,
    /// Two dots in a row, or a leading dot.
    EmptyLabel,
    /// A label longer than 63 characters.
    LabelTooLong,
    /// A character other than a letter, digit, `-` or `_`.
    BadCharacter,
    /// A public suffix itself (`com`, `co.uk`): no registrable label to score.
    PublicSuffix,
    /// A name under `arpa` (`4.3.2.1.in-addr.arpa`): it names an address, nobody registered it.
    ReverseLookup,
}

impl Invalid {
    /// A short reason for summaries.
    pub fn reason(self) -> &'static str {
        match self {
            Invalid::Empty => "empty line",
            Invalid::TooLong => "name longer than 253 characters",
            Invalid::EmptyLabel => "empty label",
            Invalid::LabelTooLong => "label longer than 63 characters",
            Invalid::BadCharacter => "character not allowed in a DNS name",
            Invalid::PublicSuffix => "a public suffix, no registrable label",
            Invalid::ReverseLookup => "a reverse lookup (under arpa), not a registered name",
        }
    }
}

/// Whether a name can be scored: a DNS name with a label left of its public suffix, not a
/// reverse lookup.
pub fn scorable(name: &str) -> Result<(), Invalid> {
    let normalised = Normalised::new(name)?;
    parts(normalised.bytes()).map(|_| ())
}

/// The parts of a normalised name the classifier scores, or why there are none.
pub(crate) fn parts(name: &[u8]) -> Result<Parts<'_>, Invalid> {
    if name == b"arpa" || name.ends_with(b".arpa") {
        return Err(Invalid::ReverseLookup);
    }
    split(name).ok_or(Invalid::PublicSuffix)
}

/// A name lowercased into a fixed buffer, without a trailing dot.
pub(crate) struct Normalised {
    buf: [u8; MAX_NAME],
    len: usize,
}

impl Normalised {
    /// Lowercase and check a name: labels of 1 to 63 letters, digits, `-` or `_`.
    pub(crate) fn new(name: &str) -> Result<Normalised, Invalid> {
        let name = name.trim();
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.is_empty() {
            return Err(Invalid::Empty);
        }
        if name.len() > MAX_NAME {
            return Err(Invalid::TooLong);
        }
        let mut buf = [0u8; MAX_NAME];
        let mut label = 0usize;
        for (slot, byte) in buf.iter_mut().zip(name.bytes()) {
            let byte = byte.to_ascii_lowercase();
            match byte {
                b'.' => {
                    if label == 0 {
                        return Err(Invalid::EmptyLabel);
                    }
                    label = 0;
                }
                b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => {
                    label += 1;
                    if label > MAX_LABEL {
                        return Err(Invalid::LabelTooLong);
                    }
                }
                _ => return Err(Invalid::BadCharacter),
            }
            *slot = byte;
        }
        Ok(Normalised {
            buf,
            len: name.len(),
        })
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

/// A valid name split at its public suffix (Public Suffix List, private section included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Parts<'a> {
    /// The label left of the public suffix: `example` in `www.example.co.uk`.
    pub label: &'a [u8],
    /// The labels left of it, without the dot before `label`: `www`; empty when none.
    pub subdomain: &'a [u8],
    /// The public suffix: `co.uk`.
    pub suffix: &'a [u8],
}

/// Split a normalised name; `None` when the name is a public suffix itself.
pub(crate) fn split(name: &[u8]) -> Option<Parts<'_>> {
    let suffix = psl::suffix(name)?.as_bytes();
    let domain = psl::domain(name)?.as_bytes();
    let label_len = domain.len().checked_sub(suffix.len() + 1)?;
    let label = domain.get(..label_len)?;
    if label.is_empty() {
        return None;
    }
    let sub_len = name.len().checked_sub(domain.len())?;
    let subdomain = name.get(..sub_len.saturating_sub(1))?;
    Some(Parts {
        label,
        subdomain,
        suffix,
    })
}

/// The symbol of a byte of a normalised name (never the boundary).
pub(crate) fn symbol(byte: u8) -> u8 {
    match byte {
        b'a'..=b'z' => byte - b'a' + 1,
        b'0'..=b'9' => byte - b'0' + 27,
        b'-' => 37,
        _ => 38,
    }
}

/// The character of a symbol, `^`/`$` standing for the boundary.
pub(crate) fn character(symbol: u8, at_start: bool) -> char {
    match symbol {
        0 if at_start => '^',
        0 => '$',
        1..=26 => char::from(b'a' + symbol - 1),
        27..=36 => char::from(b'0' + symbol - 27),
        37 => '-',
        _ => '_',
    }
}

/// Log probabilities of the next symbol of a benign label given the one or two before it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Markov {
    /// `[previous][next]`, `ALPHABET²` entries.
    pub order1: Vec<f32>,
    /// `[before previous][previous][next]`, `ALPHABET³` entries.
    pub order2: Vec<f32>,
    /// A bit set (2^SEEN_BITS bits, hashed) of the 4-, 5- and 6-grams of benign labels.
    pub seen: Vec<u64>,
}

/// Size of the set of benign 4-, 5- and 6-grams: 2^23 bits, 1 MiB.
pub(crate) const SEEN_BITS: u32 = 23;

/// The bit of an n-gram (padded symbols) in the seen set.
fn seen_bit(gram: &[u8]) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &s in gram {
        h = (h ^ u64::from(s)).wrapping_mul(0x0100_0000_01b3);
    }
    h ^= gram.len() as u64;
    let h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    usize::try_from(h >> (64 - SEEN_BITS)).unwrap_or(0)
}

/// The label's symbols between boundaries, in a fixed buffer, and its length.
fn padded(label: &[u8]) -> ([u8; MAX_LABEL + 2], usize) {
    let mut padded = [0u8; MAX_LABEL + 2];
    let mut len = 1;
    for (slot, &c) in padded.iter_mut().skip(1).zip(label) {
        *slot = symbol(c);
        len += 1;
    }
    (padded, len + 1)
}

impl Markov {
    /// Fit on labels: add-½ smoothing for order 1; order 2 interpolated with order 1, the
    /// weight of a context growing with how often it was seen (Witten–Bell style).
    pub(crate) fn fit<'a>(labels: impl Iterator<Item = &'a [u8]>) -> Markov {
        let mut c1 = vec![0u32; ALPHABET * ALPHABET];
        let mut c2 = vec![0u32; ALPHABET * ALPHABET * ALPHABET];
        for label in labels {
            let (mut a, mut b) = (0usize, 0usize);
            for next in label.iter().map(|&c| usize::from(symbol(c))).chain([0]) {
                if let Some(n) = c1.get_mut(b * ALPHABET + next) {
                    *n += 1;
                }
                if let Some(n) = c2.get_mut((a * ALPHABET + b) * ALPHABET + next) {
                    *n += 1;
                }
                (a, b) = (b, next);
            }
        }
        let mut order1 = vec![0f32; ALPHABET * ALPHABET];
        for (counts, probs) in c1.chunks(ALPHABET).zip(order1.chunks_mut(ALPHABET)) {
            let total: f64 = counts.iter().map(|&n| f64::from(n)).sum::<f64>() + 0.5 * 39.0;
            for (n, p) in counts.iter().zip(probs.iter_mut()) {
                *p = single(((f64::from(*n) + 0.5) / total).ln());
            }
        }
        let mut order2 = vec![0f32; ALPHABET * ALPHABET * ALPHABET];
        for (context, (counts, probs)) in c2
            .chunks(ALPHABET)
            .zip(order2.chunks_mut(ALPHABET))
            .enumerate()
        {
            let previous = context % ALPHABET;
            let lower = order1
                .get(previous * ALPHABET..(previous + 1) * ALPHABET)
                .unwrap_or_default();
            let total: f64 = counts.iter().map(|&n| f64::from(n)).sum();
            let distinct = counts.iter().filter(|&&n| n > 0).count() as f64;
            let lambda = if total > 0.0 {
                total / (total + distinct + 5.0)
            } else {
                0.0
            };
            for ((n, p), low) in counts.iter().zip(probs.iter_mut()).zip(lower) {
                let high = if total > 0.0 {
                    f64::from(*n) / total
                } else {
                    0.0
                };
                let mixed = lambda * high + (1.0 - lambda) * f64::from(*low).exp();
                *p = single(mixed.max(1e-9).ln());
            }
        }
        Markov {
            order1,
            order2,
            seen: Vec::new(),
        }
    }

    /// Also remember the 4-, 5- and 6-grams of the labels.
    pub(crate) fn with_seen<'a>(mut self, labels: impl Iterator<Item = &'a [u8]>) -> Markov {
        let mut seen = vec![0u64; 1usize << (SEEN_BITS - 6)];
        for label in labels {
            let (padded, len) = padded(label);
            let symbols = padded.get(..len).unwrap_or_default();
            for n in [4, 5, 6] {
                for gram in symbols.windows(n) {
                    let bit = seen_bit(gram);
                    if let Some(word) = seen.get_mut(bit / 64) {
                        *word |= 1 << (bit % 64);
                    }
                }
            }
        }
        self.seen = seen;
        self
    }

    /// Shares of the label's 4-, 5- and 6-grams seen in benign labels (1 when it has none).
    fn coverage(&self, label: &[u8]) -> (f64, f64, f64) {
        let (padded, len) = padded(label);
        let symbols = padded.get(..len).unwrap_or_default();
        let share = |n: usize| {
            let (mut hit, mut all) = (0u32, 0u32);
            for gram in symbols.windows(n) {
                let bit = seen_bit(gram);
                all += 1;
                if self
                    .seen
                    .get(bit / 64)
                    .is_some_and(|w| w & (1 << (bit % 64)) != 0)
                {
                    hit += 1;
                }
            }
            if all == 0 {
                1.0
            } else {
                f64::from(hit) / f64::from(all)
            }
        };
        (share(4), share(5), share(6))
    }

    /// Mean log probability per transition under order 1 and order 2, and the order-2 total.
    fn log_probs(&self, label: &[u8]) -> (f64, f64, f64) {
        let (mut a, mut b) = (0usize, 0usize);
        let (mut sum1, mut sum2, mut n) = (0f64, 0f64, 0f64);
        for next in label.iter().map(|&c| usize::from(symbol(c))).chain([0]) {
            sum1 += f64::from(self.order1.get(b * ALPHABET + next).copied().unwrap_or(0.0));
            sum2 += f64::from(
                self.order2
                    .get((a * ALPHABET + b) * ALPHABET + next)
                    .copied()
                    .unwrap_or(0.0),
            );
            n += 1.0;
            (a, b) = (b, next);
        }
        (sum1 / n, sum2 / n, sum2)
    }
}

/// The lexical figures of a name's registrable label (and the size of its subdomain part).
pub(crate) fn lexical(parts: &Parts<'_>, markov: &Markov) -> [f64; LEXICAL_COUNT] {
    let label = parts.label;
    let len = label.len().max(1) as f64;
    let mut counts = [0u32; ALPHABET];
    let (mut digits, mut vowels, mut letters, mut hex) = (0u32, 0u32, 0u32, 0u32);
    let (mut run, mut longest_run, mut switches) = (0u32, 0u32, 0u32);
    let mut previous_digit: Option<bool> = None;
    for &c in label {
        if let Some(n) = counts.get_mut(usize::from(symbol(c))) {
            *n += 1;
        }
        let is_digit = c.is_ascii_digit();
        let is_letter = c.is_ascii_lowercase();
        digits += u32::from(is_digit);
        letters += u32::from(is_letter);
        hex += u32::from(is_digit || (b'a'..=b'f').contains(&c));
        let vowel = matches!(c, b'a' | b'e' | b'i' | b'o' | b'u');
        vowels += u32::from(vowel);
        if is_letter && !vowel {
            run += 1;
            longest_run = longest_run.max(run);
        } else {
            run = 0;
        }
        if is_digit || is_letter {
            if previous_digit.is_some_and(|p| p != is_digit) {
                switches += 1;
            }
            previous_digit = Some(is_digit);
        }
    }
    let entropy: f64 = counts
        .iter()
        .filter(|&&n| n > 0)
        .map(|&n| {
            let p = f64::from(n) / len;
            -p * p.log2()
        })
        .sum();
    let distinct = counts.iter().filter(|&&n| n > 0).count() as f64;
    let (m1, m2, m2_total) = markov.log_probs(label);
    let (seen4, seen5, seen6) = markov.coverage(label);
    let sub_labels = if parts.subdomain.is_empty() {
        0
    } else {
        parts.subdomain.iter().filter(|&&c| c == b'.').count() + 1
    };
    [
        label.len() as f64,
        entropy,
        f64::from(digits) / len,
        if letters > 0 {
            f64::from(vowels) / f64::from(letters)
        } else {
            0.0
        },
        f64::from(longest_run),
        f64::from(hex) / len,
        distinct / len,
        f64::from(switches) / len,
        m1,
        m2,
        m2_total,
        seen4,
        seen5,
        sub_labels as f64,
        parts.subdomain.len() as f64,
        if label.starts_with(b"xn--") { 1.0 } else { 0.0 },
        seen6,
    ]
}

/// A model parameter in single precision, as the model file stores it (rounding intended;
/// values beyond the f32 range become infinite and are refused when the file is read).
#[allow(clippy::cast_possible_truncation)]
pub(crate) fn single(x: f64) -> f32 {
    x as f32
}

/// Longest n-gram hashed.
pub(crate) const MAX_NGRAM: usize = 5;

/// Namespaces of hashed features, so that the same characters in different places differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Namespace {
    /// N-grams of the registrable label.
    Label = 1,
    /// N-grams of the subdomain labels.
    Subdomain = 2,
    /// The public suffix as one token.
    Suffix = 3,
}

/// A hashed feature: its bucket and value, and where it came from (for explanations).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Hashed {
    pub bucket: u32,
    pub value: f32,
    /// The n-gram's packed symbols (0 for the suffix token).
    pub code: u32,
    pub len: u8,
    pub namespace: Namespace,
}

/// Call `f` for every hashed feature of a name: the character 1- to 5-grams of the label and
/// of each subdomain label, with `^`/`$` boundaries, each weighted 1/√(n-grams in its
/// namespace), and the suffix token.
pub(crate) fn hashed(parts: &Parts<'_>, bits: u8, mut f: impl FnMut(Hashed)) {
    label_ngrams(parts.label, Namespace::Label, 1.0, bits, &mut f);
    if !parts.subdomain.is_empty() {
        let labels = parts.subdomain.split(|&c| c == b'.');
        let count = parts.subdomain.split(|&c| c == b'.').count().max(1) as f32;
        for label in labels {
            label_ngrams(
                label,
                Namespace::Subdomain,
                count.sqrt().recip(),
                bits,
                &mut f,
            );
        }
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &c in parts.suffix {
        h = (h ^ u64::from(c)).wrapping_mul(0x0100_0000_01b3);
    }
    f(Hashed {
        bucket: bucket(h, Namespace::Suffix, bits),
        value: 1.0,
        code: 0,
        len: 0,
        namespace: Namespace::Suffix,
    });
}

/// The characters of an n-gram from its packed code (a boundary first is `^`, last is `$`).
pub(crate) fn ngram_text(code: u32, len: u8) -> String {
    let mut symbols = Vec::with_capacity(usize::from(len));
    let mut rest = code;
    for _ in 0..len {
        symbols.push(u8::try_from(rest % 40).unwrap_or(0).saturating_sub(1));
        rest /= 40;
    }
    symbols.reverse();
    symbols
        .iter()
        .enumerate()
        .map(|(i, &s)| character(s, i == 0))
        .collect()
}

fn label_ngrams(
    label: &[u8],
    namespace: Namespace,
    scale: f32,
    bits: u8,
    f: &mut impl FnMut(Hashed),
) {
    let (padded, len) = padded(label);
    let padded = padded.get(..len).unwrap_or_default();
    let grams = (1..=MAX_NGRAM)
        .map(|n| len.saturating_sub(n) + 1)
        .sum::<usize>()
        .saturating_sub(2); // the two boundary unigrams are not features
    let value = scale / (grams.max(1) as f32).sqrt();
    for start in 0..len {
        let mut code: u32 = 0;
        for (n, &s) in padded.iter().skip(start).take(MAX_NGRAM).enumerate() {
            code = code * 40 + u32::from(s) + 1;
            if n == 0 && s == 0 {
                continue;
            }
            let key = u64::from(code) | (u64::from(u8::try_from(n + 1).unwrap_or(0)) << 32);
            f(Hashed {
                bucket: bucket(key, namespace, bits),
                value,
                code,
                len: u8::try_from(n + 1).unwrap_or(0),
                namespace,
            });
        }
    }
}

fn bucket(key: u64, namespace: Namespace, bits: u8) -> u32 {
    let key = key ^ ((namespace as u64) << 56);
    let h = key.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let h = (h ^ (h >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    u32::try_from(h >> (64 - u32::from(bits))).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn parts(name: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let n = Normalised::new(name).unwrap();
        let p = split(n.bytes()).unwrap();
        (p.subdomain.to_vec(), p.label.to_vec(), p.suffix.to_vec())
    }

    #[test]
    fn names_split_at_the_public_suffix() {
        assert_eq!(
            parts("WWW.Example.co.uk."),
            (b"www".to_vec(), b"example".to_vec(), b"co.uk".to_vec())
        );
        assert_eq!(
            parts("a.b.dnktd.github.io"),
            (b"a.b".to_vec(), b"dnktd".to_vec(), b"github.io".to_vec())
        );
        assert_eq!(parts("abc.com"), (vec![], b"abc".to_vec(), b"com".to_vec()));
        let n = Normalised::new("co.uk").unwrap();
        assert_eq!(split(n.bytes()), None, "a bare public suffix has no label");
    }

    #[test]
    fn bad_names_are_refused_with_a_reason() {
        assert_eq!(Normalised::new("  ").err(), Some(Invalid::Empty));
        assert_eq!(
            Normalised::new("i4nlc..com.bn").err(),
            Some(Invalid::EmptyLabel)
        );
        assert_eq!(Normalised::new(".com").err(), Some(Invalid::EmptyLabel));
        assert_eq!(
            Normalised::new("]`dehlzzfeho.bazaar").err(),
            Some(Invalid::BadCharacter)
        );
        assert_eq!(
            Normalised::new("ex ample.com").err(),
            Some(Invalid::BadCharacter)
        );
        assert_eq!(
            Normalised::new(&"a".repeat(64)).err(),
            Some(Invalid::LabelTooLong)
        );
        let long = vec!["abcdefgh"; 30].join(".");
        assert_eq!(Normalised::new(&long).err(), Some(Invalid::TooLong));
        assert_eq!(
            Normalised::new("café.fr").err(),
            Some(Invalid::BadCharacter)
        );
    }

    #[test]
    fn lexical_figures_by_hand() {
        let markov = Markov::fit([b"abc".as_slice()].into_iter());
        let n = Normalised::new("a1b2-ccc.example.com").unwrap();
        let p = split(n.bytes()).unwrap();
        assert_eq!(p.label, b"example");
        let n = Normalised::new("x.aab1-bbbb.com").unwrap();
        let p = split(n.bytes()).unwrap();
        let f = lexical(&p, &markov);
        // "aab1-bbbb": 9 characters; a×2, b×5, 1×1, -×1.
        let entropy = -(2.0f64 / 9.0 * (2.0f64 / 9.0).log2()
            + 5.0 / 9.0 * (5.0f64 / 9.0).log2()
            + 2.0 * (1.0 / 9.0 * (1.0f64 / 9.0).log2()));
        assert_eq!(f[0], 9.0);
        assert!((f[1] - entropy).abs() < 1e-12, "{} vs {entropy}", f[1]);
        assert!((f[2] - 1.0 / 9.0).abs() < 1e-12);
        assert!((f[3] - 2.0 / 7.0).abs() < 1e-12, "vowels over letters");
        assert_eq!(f[4], 4.0, "bbbb");
        assert!(
            (f[5] - 8.0 / 9.0).abs() < 1e-12,
            "all but the hyphen are hex"
        );
        assert!((f[6] - 4.0 / 9.0).abs() < 1e-12);
        assert!((f[7] - 2.0 / 9.0).abs() < 1e-12, "b→1 and 1→b");
        assert_eq!(f[13], 1.0);
        assert_eq!(f[14], 1.0);
        assert_eq!(f[15], 0.0, "not an IDN");
        let n = Normalised::new("xn--bcher-kva.de").unwrap();
        let p = split(n.bytes()).unwrap();
        let f = lexical(&p, &markov);
        assert_eq!(f[15], 1.0, "punycode label");
    }

    #[test]
    fn markov_model_prefers_what_it_was_fitted_on() {
        let words: Vec<&[u8]> = vec![b"google", b"example", b"mailbox", b"weather", b"booking"];
        let markov = Markov::fit(words.iter().copied());
        let (_, seen, _) = markov.log_probs(b"goodbook");
        let (_, random, _) = markov.log_probs(b"xqzjvkw");
        assert!(seen > random + 1.0, "{seen} vs {random}");
        // Every row of order 1 is a distribution.
        for row in markov.order1.chunks(ALPHABET) {
            let total: f64 = row.iter().map(|&p| f64::from(p).exp()).sum();
            assert!((total - 1.0).abs() < 1e-4, "{total}");
        }
    }

    #[test]
    fn ngrams_cover_one_to_five_characters_with_boundaries() {
        let n = Normalised::new("abc.com").unwrap();
        let p = split(n.bytes()).unwrap();
        let mut grams = Vec::new();
        hashed(&p, 18, |h| {
            if h.namespace == Namespace::Label {
                grams.push(ngram_text(h.code, h.len));
            }
        });
        grams.sort();
        // "^abc$": 3 unigrams, 4 bigrams, 3 trigrams, 2 four-grams, 1 five-gram.
        assert_eq!(grams.len(), 13, "{grams:?}");
        assert!(grams.contains(&"^abc$".to_owned()), "{grams:?}");
        assert!(grams.contains(&"c$".to_owned()), "{grams:?}");
        assert!(grams.contains(&"b".to_owned()), "{grams:?}");
    }
}
