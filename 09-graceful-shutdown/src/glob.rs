//! Redis-style glob matching, a port of `stringmatchlen` from Redis's `src/util.c`.
//!
//! Redis uses this matcher for PSUBSCRIBE, PUBSUB CHANNELS, KEYS, SCAN MATCH and
//! CONFIG GET. The rules:
//!
//! * `*` matches any run of bytes (including none), `?` matches exactly one byte.
//! * `[abc]` matches one byte from the set, `[^abc]` one byte *not* in it, and
//!   `[a-z]` a range (`[z-a]` works too: the ends are swapped).
//! * `\x` matches `x` literally, both outside and inside brackets.
//! * Everything is byte-oriented and case-sensitive: `?` matches one byte of a
//!   multi-byte UTF-8 character, not the whole character.
//!
//! Redis's C version is recursive: every `*` tries each possible length by calling
//! itself on the rest of the pattern. A hostile client could make that exponential
//! (CVE-2022-36021, fixed with a `skipLongerMatches` flag) or overflow the stack
//! (CVE-2024-31228, fixed by giving up after 1000 nested `*`). This port instead
//! uses the classic iterative algorithm with one backtrack point, which is
//! O(pattern * subject) in the worst case and needs no recursion at all.
//!
//! Results agree with Redis, quirks included (they are noted where they happen),
//! including the 1000-star cap of current Redis (see [`MAX_STAR_GROUPS`]).

/// Redis gives up (reports "no match") once it has passed more than this many `*`
/// groups that are followed by more pattern: the recursion-depth cap added for
/// CVE-2024-31228 (upstream 6.2.16, 7.2.6, 7.4.1; also backported by distros, e.g.
/// Debian's 7.0.15). We never recurse, but keep the rule so results agree.
const MAX_STAR_GROUPS: usize = 1000;

/// Whether `subject` matches the Redis glob `pattern` (both raw bytes), with Redis's
/// rules: `*`, `?`, `[abc]`, `[^abc]`, `[a-z]` (reversed ranges like [z-a] work too), `\x` escapes,
/// case-sensitive.
pub fn matches(pattern: &[u8], subject: &[u8]) -> bool {
    // Quirk: Redis's main loop only runs while both inputs have bytes left, so an
    // empty subject matches only the empty pattern. Not even `*` matches "".
    if subject.is_empty() {
        return pattern.is_empty();
    }

    // Next pattern byte to look at, next subject byte to match.
    let (mut p, mut s) = (0, 0);
    // Where to retry after a failure: just past the most recent `*`, and the subject
    // position that star currently stops at. Only the latest star ever needs to
    // grow, because every other pattern element consumes exactly one byte, so an
    // earlier star growing could only push the later one further right.
    let mut retry: Option<(usize, usize)> = None;
    let mut star_groups = 0;

    loop {
        if s == subject.len() {
            // Subject used up: trailing stars may still match the empty rest.
            while pattern.get(p) == Some(&b'*') {
                p += 1;
            }
            if p == pattern.len() {
                return true;
            }
        } else if pattern.get(p) == Some(&b'*') {
            // `**` means the same as `*`.
            while pattern.get(p) == Some(&b'*') {
                p += 1;
            }
            if p == pattern.len() {
                return true; // a trailing star swallows whatever is left
            }
            // Retries resume *after* the latest star, so each group is counted once.
            star_groups += 1;
            if star_groups > MAX_STAR_GROUPS {
                return false;
            }
            // First let the star match nothing; grow it only if that fails.
            retry = Some((p, s));
            continue;
        } else if let Some(next) = match_one(pattern, p, subject[s]) {
            p = next;
            s += 1;
            continue;
        }

        // Mismatch: make the latest star swallow one more byte and try again.
        // Like Redis, stop while one byte is still left for the rest of the pattern:
        // that rest starts with a non-star element, so it can never match "".
        match retry {
            Some((star_p, star_s)) if star_s + 1 < subject.len() => {
                p = star_p;
                s = star_s + 1;
                retry = Some((star_p, s));
            }
            _ => return false,
        }
    }
}

/// Matches the single non-`*` element starting at `pattern[p]` against `byte`.
/// Returns the index of the next pattern element on success.
fn match_one(pattern: &[u8], p: usize, byte: u8) -> Option<usize> {
    match *pattern.get(p)? {
        b'?' => Some(p + 1),
        b'[' => {
            let (found, next) = match_set(pattern, p, byte);
            found.then_some(next)
        }
        // `\x` is a literal `x`. A backslash that ends the pattern is itself literal.
        b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == byte).then_some(p + 2),
        literal => (literal == byte).then_some(p + 1),
    }
}

/// Matches the `[...]` set whose `[` is at `pattern[open]` against `byte`.
/// Returns whether `byte` is accepted and the index just past the set.
///
/// Redis's parsing quirks, reproduced on purpose:
/// * An unclosed set (`[abc`) runs to the end of the pattern, so it is the last
///   element: `[abc` behaves like `[abc]`, and `[` alone never matches.
/// * `[]` is an empty set that never matches; `[^]` matches any byte.
/// * A range takes the two bytes around a `-` literally, even `]` or `\`, so
///   `[a-]` is the range `]`..`a` followed by an unclosed set.
fn match_set(pattern: &[u8], open: usize, byte: u8) -> (bool, usize) {
    let mut i = open + 1;
    let negated = pattern.get(i) == Some(&b'^');
    if negated {
        i += 1;
    }

    let mut found = false;
    let next = loop {
        match pattern.get(i) {
            None => break pattern.len(), // unclosed: the set eats the rest
            Some(b'\\') if i + 1 < pattern.len() => {
                found |= pattern[i + 1] == byte;
                i += 2;
            }
            Some(b']') => break i + 1,
            Some(&first) if i + 2 < pattern.len() && pattern[i + 1] == b'-' => {
                found |= in_range(first, pattern[i + 2], byte);
                i += 3;
            }
            Some(&literal) => {
                found |= literal == byte;
                i += 1;
            }
        }
    };
    (found != negated, next)
}

/// Whether `byte` lies between the range ends `a` and `b`, in either order.
///
/// Redis compares C `char`s, which are signed on x86-64 (the usual server build),
/// so bytes 0x80..=0xFF sort *below* 0x00. Compare as `i8` to match: `[a-\xff]`
/// covers 0xFF and 0x00..=b'a', not b'a'..=0xFF. (Builds where `char` is unsigned,
/// such as ARM, behave differently for such ranges; ASCII ranges are unaffected.)
fn in_range(a: u8, b: u8, byte: u8) -> bool {
    let (a, b, byte) = (a as i8, b as i8, byte as i8);
    a.min(b) <= byte && byte <= a.max(b)
}

#[cfg(test)]
mod tests {
    use super::matches;

    /// (pattern, subject, expected). Every expected value was confirmed against a real
    /// redis-server (Debian's 7.0.15), through PSUBSCRIBE + PUBLISH and through KEYS.
    const CASES: &[(&[u8], &[u8], bool)] = &[
        // Plain bytes: exact, whole-subject, case-sensitive.
        (b"hello", b"hello", true),
        (b"hello", b"hell", false),
        (b"hell", b"hello", false),
        (b"Hello", b"hello", false),
        (b"", b"", true),
        (b"", b"a", false),
        (b"a", b"", false),
        (b"a\x00c", b"a\x00c", true),
        // `*`: any run of bytes, including none.
        (b"*", b"anything", true),
        (b"*", b"", false), // quirk: an empty subject matches only ""
        (b"**", b"", false),
        (b"h*o", b"hello", true),
        (b"h*o", b"ho", true),
        (b"h*o", b"hellx", false),
        (b"*o", b"hello", true),
        (b"h*", b"h", true),
        (b"a*b*c", b"abc", true),
        (b"a*b*c", b"axxbyyc", true),
        (b"a*b*c", b"axxbyy", false),
        (b"a***b", b"ab", true),
        (b"*a*", b"a", true),
        (b"*a*", b"bbb", false),
        (b"*ab", b"aab", true),
        (b"*aab", b"aaab", true),
        (b"a*b", b"abbb", true),
        (b"news.*", b"news.sport", true),
        (b"news.*", b"news", false),
        (b"abc***", b"abc", true),
        (b"abc*?", b"abc", false),
        (b"abc*?", b"abcd", true),
        (b"*[", b"a", false),
        // `?`: exactly one byte, any byte.
        (b"h?llo", b"hello", true),
        (b"h?llo", b"hllo", false),
        (b"h?llo", b"heello", false),
        (b"?", b"", false),
        (b"?", b"\x00", true),
        (b"*?", b"a", true),
        (b"??", b"a", false),
        // Bytes, not characters: "é" is the two bytes C3 A9 in UTF-8.
        (b"caf?", "café".as_bytes(), false),
        (b"caf??", "café".as_bytes(), true),
        (b"*\xa9", "café".as_bytes(), true),
        ("caf[é]".as_bytes(), "café".as_bytes(), false),
        ("caf[é]?".as_bytes(), "café".as_bytes(), true),
        // `[...]` sets, `[^...]` negated sets, `[a-z]` ranges.
        (b"h[ae]llo", b"hello", true),
        (b"h[ae]llo", b"hallo", true),
        (b"h[ae]llo", b"hillo", false),
        (b"h[ae]llo", b"hllo", false),
        (b"h[^e]llo", b"hallo", true),
        (b"h[^e]llo", b"hello", false),
        (b"h[a-b]llo", b"hbllo", true),
        (b"h[a-b]llo", b"hcllo", false),
        (b"[a-z]", b"M", false),
        (b"[^a-z]", b"M", true),
        (b"[z-a]", b"m", true), // reversed range: ends are swapped
        (b"[z-a]", b"M", false),
        (b"[a-c-e]", b"d", false), // "a-c", then literal '-' and 'e'
        (b"[a-c-e]", b"-", true),
        (b"[a-c-e]", b"e", true),
        (b"[-a]", b"-", true),
        (b"[*]", b"*", true),
        (b"[*]", b"a", false),
        (b"[?]", b"?", true),
        (b"[?]", b"a", false),
        (b"[[]", b"[", true),
        // Empty sets.
        (b"[]", b"]", false), // `[]` is an empty set
        (b"[]", b"a", false),
        (b"[]]", b"]", false), // `[]` then a literal ']'
        (b"[]]", b"]]", false),
        (b"[^]", b"x", true), // negated empty set: any byte
        (b"[^]]", b"x]", true),
        (b"[^]]", b"x", false),
        // Escapes inside sets.
        (b"[\\]]", b"]", true),
        (b"[\\]]", b"\\", false),
        (b"[\\a]", b"a", true),
        (b"[\\\\]", b"\\", true),
        (b"[a\\-z]", b"-", true), // escaped '-' is not a range
        (b"[a\\-z]", b"m", false),
        (b"[\\^a]", b"^", true), // escaped '^' does not negate
        (b"[\\^a]", b"b", false),
        // A range takes the bytes around '-' literally, even ']' and '\'.
        (b"[a-]", b"a", true), // the range ']'..'a', then an unclosed set
        (b"[a-]", b"]", true),
        (b"[a-]", b"_", true),
        (b"[a-]", b"-", false),
        (b"[a-]x", b"x", true), // 'x' is inside the (unclosed) set
        (b"[a-]x", b"ax", false),
        (b"[a-\\]", b"_", true), // the range '\'..'a'
        (b"[a-\\]", b"\\", true),
        (b"[a-\\]", b"b", false),
        // Unclosed sets run to the end of the pattern.
        (b"[abc", b"b", true),
        (b"[abc", b"bx", false),
        (b"x[abc", b"xc", true),
        (b"[abc*", b"*", true), // '*' is a set member, not a wildcard
        (b"[abc*", b"bbb", false),
        (b"[", b"[", false), // an unclosed empty set never matches
        (b"[", b"", false),
        (b"[^", b"z", true),
        (b"[^", b"zz", false),
        (b"[^a", b"b", true),
        (b"[^a", b"a", false),
        (b"[\\", b"\\", true), // a trailing backslash in a set is literal
        (b"[a\\", b"\\", true),
        (b"[a-", b"-", true), // too short for a range: 'a' and '-'
        (b"[a-", b"b", false),
        // Range ends are compared as signed C chars (see `in_range`).
        (b"[a-\xff]", b"\x80", false),
        (b"[a-\xff]", b"\xff", true),
        (b"[a-\xff]", b"\x00", true),
        (b"[a-\xff]", b"b", false),
        (b"[\x80-\xff]", b"\x90", true),
        (b"[\x80-\xff]", b"a", false),
        (b"[\x00-\x7f]", b"\x80", false),
        (b"[\x00-\x7f]", b"\x7f", true),
        // `\x` escapes outside sets.
        (b"\\*", b"*", true),
        (b"\\*", b"a", false),
        (b"\\?", b"?", true),
        (b"\\?", b"a", false),
        (b"\\[a]", b"[a]", true),
        (b"\\[a]", b"a", false),
        (b"\\a", b"a", true),
        (b"\\\\", b"\\", true),
        (b"*\\*", b"abc*", true),
        (b"*\\*", b"abc", false),
        (b"a\\", b"a\\", true), // a trailing backslash is a literal '\'
        (b"a\\", b"a", false),
        (b"\\", b"\\", true),
    ];

    /// Long or hostile inputs, built at run time (also confirmed against Redis).
    fn generated_cases() -> Vec<(Vec<u8>, Vec<u8>, bool)> {
        let a = |n: usize| vec![b'a'; n];
        vec![
            // Exponential for naive recursive matchers (Redis before 7.0.9).
            (b"*a*a*a*a*a*a*a*a*a*b".to_vec(), a(100_000), false),
            (b"*a*a*a*a*a*a*a*a*a*a".to_vec(), a(100_000), true),
            // Worst case for the single-backtrack loop: ~100 steps per start.
            (
                [b"*".to_vec(), a(100), b"b".to_vec()].concat(),
                a(10_000),
                false,
            ),
            (
                [b"*".to_vec(), a(100), b"?".to_vec()].concat(),
                a(10_000),
                true,
            ),
            // Redis's cap: at most 1000 star groups with pattern after them.
            (b"*a".repeat(1000), a(1000), true),
            (b"*a".repeat(1001), a(1001), false),
            ([b"*a".repeat(1000), b"*".to_vec()].concat(), a(1000), true),
            ([b"*a".repeat(1000), b"*".to_vec()].concat(), a(2000), true),
            (b"*?".repeat(50_000), a(50_000), false), // from Redis's own test suite
            (
                [b"*".to_vec(), b"\\*".repeat(2000)].concat(),
                b"*".repeat(2000),
                true,
            ),
        ]
    }

    #[test]
    fn table() {
        for &(pattern, subject, expected) in CASES {
            assert_eq!(
                matches(pattern, subject),
                expected,
                "pattern \"{}\" subject \"{}\"",
                pattern.escape_ascii(),
                subject.escape_ascii(),
            );
        }
    }

    #[test]
    fn hostile_patterns_do_not_blow_up() {
        // A backtracking matcher without protection would effectively never finish
        // the first case; this loop takes milliseconds.
        for (pattern, subject, expected) in generated_cases() {
            assert_eq!(matches(&pattern, &subject), expected);
        }
    }
}
