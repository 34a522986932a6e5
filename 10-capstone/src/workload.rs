//! What to send: a command, encoded once, and the batches built from it.
//!
//! Like redis-benchmark, the command is turned into RESP bytes a single time
//! and then copied once per pipelined request into a batch buffer that every
//! batch reuses. Only the `__rand_int__` placeholders change between batches,
//! and they are overwritten in place with digits of the same width, so
//! sending a batch allocates nothing.

use std::io::Write;

/// The placeholder redis-benchmark replaces with a random key number.
pub const PLACEHOLDER: &[u8] = b"__rand_int__";

/// One named command to measure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    /// Shown in reports: "SET", or the command line for a custom command.
    pub title: String,
    /// The command's arguments, name first.
    pub args: Vec<Vec<u8>>,
}

/// The built-in tests `-t` can pick, in the order they run.
pub const STANDARD: &[&str] = &["ping", "echo", "set", "get"];

impl Workload {
    /// A built-in test by its `-t` name, with `data_size`-byte values.
    /// Keys follow redis-benchmark's `key:__rand_int__`.
    pub fn standard(name: &str, data_size: usize) -> Option<Workload> {
        let value = vec![b'x'; data_size];
        let args: Vec<Vec<u8>> = match name {
            "ping" => vec![b"PING".to_vec()],
            "echo" => vec![b"ECHO".to_vec(), value],
            "set" => vec![b"SET".to_vec(), b"key:__rand_int__".to_vec(), value],
            "get" => vec![b"GET".to_vec(), b"key:__rand_int__".to_vec()],
            _ => return None,
        };
        Some(Workload {
            title: name.to_ascii_uppercase(),
            args,
        })
    }

    /// Any command, given as its words: the title is the command line.
    pub fn custom(words: &[String]) -> Workload {
        Workload {
            title: words.join(" "),
            args: words.iter().map(|w| w.as_bytes().to_vec()).collect(),
        }
    }

    /// The command as a RESP array of bulk strings, as clients send it.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = write!(out, "*{}\r\n", self.args.len());
        for arg in &self.args {
            let _ = write!(out, "${}\r\n", arg.len());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        out
    }
}

/// A reusable buffer holding up to `capacity` copies of one command.
pub struct Batch {
    bytes: Vec<u8>,
    /// The length of one copy.
    one: usize,
    /// Where the placeholders start, in the first copy.
    slots: Vec<usize>,
    /// `Some(n)`: replace placeholders with numbers below n (`-r n`).
    /// `None`: leave them as they are, so every request hits the same key,
    /// as redis-benchmark does without `-r`.
    keyspace: Option<u64>,
}

impl Batch {
    pub fn new(workload: &Workload, capacity: usize, keyspace: Option<u64>) -> Batch {
        let one = workload.encode();
        let slots = one
            .windows(PLACEHOLDER.len())
            .enumerate()
            .filter(|(_, window)| *window == PLACEHOLDER)
            .map(|(at, _)| at)
            .collect();
        Batch {
            bytes: one.repeat(capacity),
            one: one.len(),
            slots,
            keyspace,
        }
    }

    /// How many requests one batch can hold.
    pub fn capacity(&self) -> usize {
        self.bytes.len() / self.one
    }

    /// The bytes of the next `count` requests, with fresh random keys.
    pub fn next(&mut self, count: usize, rng: &mut Rng) -> &[u8] {
        let end = count * self.one;
        if let Some(keyspace) = self.keyspace {
            for copy in (0..end).step_by(self.one) {
                for &slot in &self.slots {
                    let at = copy + slot;
                    write_key(
                        &mut self.bytes[at..at + PLACEHOLDER.len()],
                        rng.below(keyspace),
                    );
                }
            }
        }
        &self.bytes[..end]
    }
}

/// Writes `n` as zero-padded decimal filling `out` (12 digits here, the width
/// of the placeholder, as redis-benchmark does).
fn write_key(out: &mut [u8], mut n: u64) {
    for digit in out.iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// The largest `-r` whose numbers still fit the placeholder's 12 digits.
pub const MAX_KEYSPACE: u64 = 1_000_000_000_000;

/// SplitMix64: a tiny, fast pseudo-random generator, plenty for picking keys.
/// Each connection gets its own, seeded by its number, so a run is
/// repeatable and two servers being compared see the same keys.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`. The modulo bias is below one part in a million
    /// for any keyspace up to `MAX_KEYSPACE`, far below what a benchmark sees.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_tests_encode_as_redis_benchmark_sends_them() {
        let set = Workload::standard("set", 3).unwrap();
        assert_eq!(set.title, "SET");
        assert_eq!(
            set.encode(),
            b"*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nxxx\r\n"
        );
        assert!(Workload::standard("lpush", 3).is_none());
    }

    #[test]
    fn placeholders_stay_without_a_keyspace() {
        let get = Workload::standard("get", 3).unwrap();
        let mut batch = Batch::new(&get, 4, None);
        let mut rng = Rng::new(1);
        assert_eq!(batch.capacity(), 4);
        let bytes = batch.next(2, &mut rng).to_vec();
        assert_eq!(bytes, get.encode().repeat(2));
    }

    #[test]
    fn placeholders_become_twelve_digit_keys_below_the_keyspace() {
        let words = ["MSET", "a:__rand_int__", "__rand_int__"].map(String::from);
        let mset = Workload::custom(&words);
        assert_eq!(mset.title, "MSET a:__rand_int__ __rand_int__");
        let mut batch = Batch::new(&mset, 3, Some(1000));
        let mut rng = Rng::new(7);
        let one = mset.encode().len();
        let bytes = batch.next(3, &mut rng).to_vec();
        assert_eq!(
            bytes.len(),
            3 * one,
            "same length: keys are rewritten in place"
        );
        let text = String::from_utf8(bytes).unwrap();
        assert!(!text.contains("__rand_int__"));
        let numbers: Vec<u64> = text
            .split("\r\n")
            .filter_map(|line| line.strip_prefix("a:").or(Some(line)))
            .filter(|word| word.len() == 12)
            .map(|word| word.parse().unwrap())
            .collect();
        assert_eq!(numbers.len(), 6, "two placeholders in each of three copies");
        assert!(numbers.iter().all(|&n| n < 1000));
    }

    #[test]
    fn keys_are_zero_padded() {
        let mut out = [0u8; 12];
        write_key(&mut out, 42);
        assert_eq!(&out, b"000000000042");
        write_key(&mut out, MAX_KEYSPACE - 1);
        assert_eq!(&out, b"999999999999");
    }

    #[test]
    fn the_generator_is_repeatable_and_spread() {
        let mut a = Rng::new(3);
        let mut b = Rng::new(3);
        let draws: Vec<u64> = (0..1000).map(|_| a.below(10)).collect();
        assert!(draws.iter().all(|&d| d == b.below(10)));
        for digit in 0..10 {
            let seen = draws.iter().filter(|&&d| d == digit).count();
            assert!(
                (50..150).contains(&seen),
                "{digit} drawn {seen} times in 1000"
            );
        }
    }
}
