//! Reading and writing Redis RDB snapshot files (`dump.rdb`), the way Redis 7.0
//! writes them.
//!
//! A snapshot is one flat byte stream (rdb.c, `rdbSaveRio`):
//!
//! ```text
//! "REDIS0010"                         magic + four-digit format version
//! AUX name value        (repeated)    metadata; a reader skips names it doesn't know
//! SELECTDB 0                          the keys that follow belong to database 0
//! RESIZEDB keys expires               a sizing hint for the key and expiry tables
//! [EXPIRETIME_MS t] type key value    one record per key (repeated)
//! EOF                                 the single byte 0xFF
//! checksum                            CRC-64 of every byte before it, 8 bytes little-endian
//! ```
//!
//! Only string values (value type 0) are supported. Anything else makes
//! [`decode`] fail with an error that says what it found and at which byte.

use std::collections::HashSet;

use anyhow::{anyhow, bail, Result};
use bytes::Bytes;

/// One key as the snapshot stores it. Expiry is an absolute Unix time in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: Bytes,
    pub value: Bytes,
    pub expires_at_ms: Option<i64>,
}

/// The format version Redis 7.0 writes, and the newest one it can read
/// (`RDB_VERSION` in rdb.h).
const RDB_VERSION: u32 = 10;

/// The first version whose files end with a CRC-64 checksum (Redis 2.6).
const FIRST_VERSION_WITH_CHECKSUM: u32 = 5;

// Opcodes (rdb.h, `RDB_OPCODE_*`). They sit where a record's value-type byte
// would be; they are taken from the top of the byte range so that they can
// never be mistaken for a value type.
const OP_FUNCTION2: u8 = 0xF5;
const OP_FUNCTION_PRE_GA: u8 = 0xF6; // only written by 7.0 release candidates
const OP_MODULE_AUX: u8 = 0xF7;
const OP_IDLE: u8 = 0xF8;
const OP_FREQ: u8 = 0xF9;
const OP_AUX: u8 = 0xFA;
const OP_RESIZEDB: u8 = 0xFB;
const OP_EXPIRETIME_MS: u8 = 0xFC;
const OP_EXPIRETIME: u8 = 0xFD;
const OP_SELECTDB: u8 = 0xFE;
const OP_EOF: u8 = 0xFF;

/// Value type of a plain string (`RDB_TYPE_STRING` in rdb.h).
const TYPE_STRING: u8 = 0;

// Length prefixes (rdb.h, `RDB_6BITLEN` and friends). The top two bits of the
// first byte say which form follows:
//   00xxxxxx                    length 0..=63 in the low six bits
//   01xxxxxx xxxxxxxx           length 0..=16383 in 14 bits, big-endian
//   10000000 + 4 bytes          32-bit length, big-endian
//   10000001 + 8 bytes          64-bit length, big-endian
//   11xxxxxx                    not a length: a special string encoding follows
const LEN_14BIT: u8 = 0x40;
const LEN_32BIT: u8 = 0x80;
const LEN_64BIT: u8 = 0x81;
const ENCODED: u8 = 0xC0;

// The special string encodings, in the low six bits after 11 (rdb.h, `RDB_ENC_*`).
const ENC_INT8: u8 = 0;
const ENC_INT16: u8 = 1;
const ENC_INT32: u8 = 2;
const ENC_LZF: u8 = 3;

/// Serialises a whole snapshot of database 0, as Redis 7.0 does: "REDIS0010", AUX fields
/// (redis-ver "7.0.0", redis-bits 64, ctime, used-mem, aof-base 0), SELECTDB 0, RESIZEDB,
/// entries (EXPIRETIME_MS before a key that has one; type 0 = string), EOF, CRC64 checksum.
/// `ctime_secs` is passed in so tests are deterministic.
pub fn encode<'a>(
    entries: impl ExactSizeIterator<Item = (&'a Bytes, &'a Bytes, Option<i64>)>,
    ctime_secs: i64,
) -> Vec<u8> {
    // RESIZEDB comes before the keys but needs to know how many of them have
    // an expiry. Redis reads that off its expiry table; we only have an
    // iterator, so we gather the (cheap, borrowed) entries first.
    let entries: Vec<_> = entries.collect();
    let keys_with_expiry = entries.iter().filter(|(_, _, exp)| exp.is_some()).count();
    // Redis records its allocator's total in "used-mem"; a loader only uses it
    // to show loading progress. The bytes of keys and values are our stand-in.
    let payload_bytes: usize = entries.iter().map(|(k, v, _)| k.len() + v.len()).sum();

    let mut out = Vec::with_capacity(128 + payload_bytes + 16 * entries.len());
    out.extend_from_slice(format!("REDIS{RDB_VERSION:04}").as_bytes());

    // The same AUX fields, in the same order, as `rdbSaveInfoAuxFields`.
    // Redis turns numbers into decimal text first (`rdbSaveAuxFieldStrInt`),
    // and the string writer then stores the small ones as integers.
    write_aux(&mut out, "redis-ver", "7.0.0");
    write_aux(&mut out, "redis-bits", "64");
    write_aux(&mut out, "ctime", &ctime_secs.to_string());
    write_aux(&mut out, "used-mem", &payload_bytes.to_string());
    write_aux(&mut out, "aof-base", "0");

    // `rdbSaveDb` writes nothing at all, not even SELECTDB, for an empty database.
    if !entries.is_empty() {
        out.push(OP_SELECTDB);
        write_len(&mut out, 0);
        out.push(OP_RESIZEDB);
        write_len(&mut out, entries.len() as u64);
        write_len(&mut out, keys_with_expiry as u64);
    }

    // One record per key, as `rdbSaveKeyValuePair` lays it out.
    for (key, value, expires_at_ms) in entries {
        if let Some(ms) = expires_at_ms {
            out.push(OP_EXPIRETIME_MS);
            // Little-endian, unlike lengths (`rdbSaveMillisecondTime`).
            out.extend_from_slice(&ms.to_le_bytes());
        }
        out.push(TYPE_STRING);
        write_string(&mut out, key);
        write_string(&mut out, value);
    }

    out.push(OP_EOF);
    // The checksum covers everything up to and including EOF. Redis updates it
    // as it writes; we have the whole buffer, so one pass at the end will do.
    let checksum = crc64(0, &out);
    out.extend_from_slice(&checksum.to_le_bytes());
    out
}

/// Parses a snapshot. Errors name what was found and where (byte offset), e.g.
/// "unsupported value type 18 (list, quicklist v2 encoding) for key \"mylist\" at byte 123 (0x7b); ...",
/// "checksum mismatch: file says X, contents hash to Y",
/// "unsupported RDB version 11 (this server reads versions 1 to 10)", "truncated file at byte N (0x..): ...".
///
/// Keys whose expiry time has already passed are returned like any other;
/// dropping them is up to the caller (Redis drops them while loading).
pub fn decode(data: &[u8]) -> Result<Vec<Entry>> {
    let mut reader = Reader { data, pos: 0 };
    let version = reader.header()?;
    let entries = reader.records().map_err(|err| {
        // A parse error in a file whose checksum is also wrong is most likely
        // damage, not a writer bug. Saying so saves a learner a long hunt.
        if checksum_trailer_is_wrong(data, version) {
            anyhow!(
                "{err} (also, the last 8 bytes of the file are not a valid checksum \
                 of the rest, so the file was probably cut short or damaged)"
            )
        } else {
            err
        }
    })?;

    // The same rule as `rdbLoadRioWithLoadingCtx`: files older than version 5
    // have no checksum, and a stored 0 means the writer had checksums turned
    // off (`rdbchecksum no`).
    if version >= FIRST_VERSION_WITH_CHECKSUM {
        let covered = reader.pos;
        let stored = u64::from_le_bytes(reader.array("the CRC-64 checksum")?);
        let computed = crc64(0, &data[..covered]);
        if stored != 0 && stored != computed {
            bail!("checksum mismatch: file says {stored:#018x}, contents hash to {computed:#018x}");
        }
    }

    // Redis stops reading after the checksum. We refuse leftovers instead:
    // they mean the file isn't what its writer meant it to be.
    if reader.remaining() > 0 {
        bail!(
            "{} unexpected bytes after the end of the snapshot at {}",
            reader.remaining(),
            offset(reader.pos)
        );
    }
    Ok(entries)
}

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

/// An AUX field: the opcode, then name and value as ordinary strings
/// (`rdbSaveAuxField`).
fn write_aux(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(OP_AUX);
    write_string(out, name.as_bytes());
    write_string(out, value.as_bytes());
}

/// Writes a length in the shortest of the four forms (`rdbSaveLen`).
fn write_len(out: &mut Vec<u8>, len: u64) {
    if len < 1 << 6 {
        out.push(len as u8);
    } else if len < 1 << 14 {
        out.push(LEN_14BIT | (len >> 8) as u8);
        out.push(len as u8);
    } else if let Ok(len) = u32::try_from(len) {
        out.push(LEN_32BIT);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(LEN_64BIT);
        out.extend_from_slice(&len.to_be_bytes());
    }
}

/// Writes a key or value in the most compact form Redis would pick
/// (`rdbSaveRawString`): as a small integer if it is one, else LZF-compressed
/// if that saves space, else as a length followed by the raw bytes.
fn write_string(out: &mut Vec<u8>, s: &[u8]) {
    if let Some(n) = as_small_integer(s) {
        write_integer(out, n);
        return;
    }

    // Redis doesn't try below 21 bytes: LZF can't shrink data that short.
    if s.len() > 20 {
        // `rdbSaveLzfStringObject` gives LZF an output buffer of len - 4 bytes
        // and falls back to raw bytes if the result doesn't fit, so compression
        // is kept only when it saves at least four bytes.
        if let Some(compressed) = lzf_compress(s, s.len() - 4) {
            out.push(ENCODED | ENC_LZF);
            write_len(out, compressed.len() as u64);
            write_len(out, s.len() as u64);
            out.extend_from_slice(&compressed);
            return;
        }
    }

    write_len(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// The number `s` spells, if it spells a 32-bit integer in exactly the way
/// Rust (and Redis) would print it: no sign but "-", no leading zeros, no
/// spaces, no "-0". Anything else must stay text, or it would not read back
/// byte for byte. This is `rdbTryIntegerEncoding`, which relies on util.c's
/// strict `string2ll`; we check the same thing by printing the number again.
fn as_small_integer(s: &[u8]) -> Option<i32> {
    let n: i32 = std::str::from_utf8(s).ok()?.parse().ok()?;
    (n.to_string().as_bytes() == s).then_some(n)
}

/// Writes an integer in the smallest of the three widths, little-endian
/// (`rdbEncodeInteger`).
fn write_integer(out: &mut Vec<u8>, n: i32) {
    if let Ok(n) = i8::try_from(n) {
        out.push(ENCODED | ENC_INT8);
        out.extend_from_slice(&n.to_le_bytes());
    } else if let Ok(n) = i16::try_from(n) {
        out.push(ENCODED | ENC_INT16);
        out.extend_from_slice(&n.to_le_bytes());
    } else {
        out.push(ENCODED | ENC_INT32);
        out.extend_from_slice(&n.to_le_bytes());
    }
}

// ---------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------

/// A cursor over the file. Every read checks the remaining input first, so a
/// corrupt length produces an error rather than a panic or a huge allocation.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

/// What a length prefix turned out to be (`rdbLoadLenByRef`).
enum Length {
    Plain(u64),
    /// The prefix was 11xxxxxx: a special string encoding (`ENC_*`) follows.
    Encoded(u8),
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    /// Takes the next `n` bytes; `what` names them for the error message.
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            bail!(
                "truncated file at {}: {what} needs {n} bytes but only {} remain",
                offset(self.pos),
                self.remaining()
            );
        }
        let bytes = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut bytes = [0; N];
        bytes.copy_from_slice(self.take(N, what)?);
        Ok(bytes)
    }

    fn byte(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }

    /// Checks the magic and returns the format version.
    fn header(&mut self) -> Result<u32> {
        let magic = self.take(5, "the \"REDIS\" signature")?;
        if magic != b"REDIS" {
            bail!(
                "not an RDB file: it should start with \"REDIS\" but starts with {}",
                quoted(magic)
            );
        }
        // Four ASCII digits (written with "%04d" in `rdbSaveRio`).
        let digits = self.take(4, "the format version")?;
        let version = std::str::from_utf8(digits)
            .ok()
            .filter(|text| text.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|text| text.parse::<u32>().ok())
            .ok_or_else(|| {
                anyhow!(
                    "bad RDB version {} at byte 5: expected four decimal digits",
                    quoted(digits)
                )
            })?;
        if !(1..=RDB_VERSION).contains(&version) {
            bail!(
                "unsupported RDB version {version} (this server reads versions 1 to {RDB_VERSION})"
            );
        }
        Ok(version)
    }

    /// Reads opcodes and key records up to and including EOF
    /// (the main loop of `rdbLoadRioWithLoadingCtx`).
    fn records(&mut self) -> Result<Vec<Entry>> {
        let mut entries = Vec::new();
        let mut seen_keys = HashSet::new();
        let mut db = 0;
        // Set by EXPIRETIME(_MS), which comes before the key it belongs to.
        let mut pending_expiry = None;

        loop {
            let start = self.pos;
            let opcode = self.byte("an opcode or value type")?;
            match opcode {
                OP_EOF => return Ok(entries),
                OP_SELECTDB => db = self.plain_len("the SELECTDB database number")?,
                OP_RESIZEDB => {
                    let keys = self.plain_len("the RESIZEDB key count")?;
                    self.plain_len("the RESIZEDB expiry count")?;
                    // Only a hint, and an untrusted one. The smallest record is
                    // three bytes (type, key length, value length), so never
                    // reserve room for more keys than the rest of the file holds.
                    let room = usize::try_from(keys)
                        .unwrap_or(usize::MAX)
                        .min(self.remaining() / 3);
                    entries.reserve(room);
                    seen_keys.reserve(room);
                }
                OP_AUX => {
                    // Loaders must skip AUX fields they don't understand, and
                    // nothing in them changes what we load.
                    self.string("an AUX field name")?;
                    self.string("an AUX field value")?;
                }
                OP_EXPIRETIME_MS => {
                    let ms = i64::from_le_bytes(self.array("the EXPIRETIME_MS time")?);
                    pending_expiry = Some(ms);
                }
                OP_EXPIRETIME => {
                    // Pre-3.0 files: 4-byte little-endian seconds (`rdbLoadTime`).
                    let secs = i32::from_le_bytes(self.array("the EXPIRETIME time")?);
                    pending_expiry = Some(i64::from(secs) * 1000);
                }
                // Eviction hints (LRU idle seconds, LFU counter). Redis writes
                // them only under an LRU or LFU maxmemory-policy; we don't evict
                // that way, so skip them.
                OP_IDLE => {
                    self.plain_len("the IDLE time")?;
                }
                OP_FREQ => {
                    self.byte("the FREQ counter")?;
                }
                OP_MODULE_AUX => bail!(
                    "unsupported opcode 0x{opcode:02X} (MODULE_AUX: data saved by a Redis module) at {}",
                    offset(start)
                ),
                OP_FUNCTION2 => bail!(
                    "unsupported opcode 0x{opcode:02X} (FUNCTION2: a Redis Functions library) at {}",
                    offset(start)
                ),
                OP_FUNCTION_PRE_GA => bail!(
                    "unsupported opcode 0x{opcode:02X} (FUNCTION: a Redis Functions library \
                     from a 7.0 release candidate) at {}",
                    offset(start)
                ),
                value_type => {
                    let entry = self.record(value_type, start, db, pending_expiry.take())?;
                    if !seen_keys.insert(entry.key.clone()) {
                        // Redis refuses this too ("Duplicated key found in RDB file").
                        bail!("duplicate key {} at {}", quoted(&entry.key), offset(start));
                    }
                    entries.push(entry);
                }
            }
        }
    }

    /// Reads one key record; its type byte at `start` has already been read.
    fn record(
        &mut self,
        value_type: u8,
        start: usize,
        db: u64,
        expires_at_ms: Option<i64>,
    ) -> Result<Entry> {
        // An unknown type means we can't trust what follows to be a key.
        let Some(type_name) = value_type_name(value_type) else {
            bail!("unknown value type {value_type} at {}", offset(start));
        };
        // Every type stores its key the same way, so we can read it to name it.
        let key = self.string("a key")?;
        if db != 0 {
            bail!(
                "keys in database {db} are not supported (only database 0 is): key {} at {}",
                quoted(&key),
                offset(start)
            );
        }
        if value_type != TYPE_STRING {
            bail!(
                "unsupported value type {value_type} ({type_name}) for key {} at {}; \
                 only strings (type 0) are supported",
                quoted(&key),
                offset(start)
            );
        }
        let value = self.string(&format!("the value of key {}", quoted(&key)))?;
        Ok(Entry {
            key,
            value,
            expires_at_ms,
        })
    }

    /// Reads a length prefix (`rdbLoadLenByRef`).
    fn length(&mut self, what: &str) -> Result<Length> {
        let start = self.pos;
        let first = self.byte(what)?;
        let len = match first >> 6 {
            0b00 => u64::from(first & 0x3F),
            0b01 => (u64::from(first & 0x3F) << 8) | u64::from(self.byte(what)?),
            0b11 => return Ok(Length::Encoded(first & 0x3F)),
            _ => match first {
                LEN_32BIT => u64::from(u32::from_be_bytes(self.array(what)?)),
                LEN_64BIT => u64::from_be_bytes(self.array(what)?),
                _ => bail!(
                    "invalid length prefix 0x{first:02X} for {what} at {}",
                    offset(start)
                ),
            },
        };
        Ok(Length::Plain(len))
    }

    /// Reads a length that must be a plain number, such as a database index.
    fn plain_len(&mut self, what: &str) -> Result<u64> {
        let start = self.pos;
        match self.length(what)? {
            Length::Plain(len) => Ok(len),
            // Redis would quietly use the low six bits; an error is clearer.
            Length::Encoded(_) => bail!(
                "expected a length for {what} at {} but found a string-encoding marker",
                offset(start)
            ),
        }
    }

    /// Reads a string in any of its forms (`rdbGenericLoadStringObject`).
    fn string(&mut self, what: &str) -> Result<Bytes> {
        let start = self.pos;
        let bytes = match self.length(what)? {
            Length::Plain(len) => Bytes::copy_from_slice(self.take(saturating_usize(len), what)?),
            // Integers come back as their decimal text (`rdbLoadIntegerObject`).
            Length::Encoded(ENC_INT8) => {
                Bytes::from(i8::from_le_bytes(self.array(what)?).to_string())
            }
            Length::Encoded(ENC_INT16) => {
                Bytes::from(i16::from_le_bytes(self.array(what)?).to_string())
            }
            Length::Encoded(ENC_INT32) => {
                Bytes::from(i32::from_le_bytes(self.array(what)?).to_string())
            }
            // LZF: compressed length, original length, compressed bytes
            // (`rdbLoadLzfStringObject`).
            Length::Encoded(ENC_LZF) => {
                let compressed_len = self.plain_len(what)?;
                let original_len = self.plain_len(what)?;
                let compressed = self.take(saturating_usize(compressed_len), what)?;
                let original = lzf_decompress(compressed, original_len).map_err(|reason| {
                    anyhow!(
                        "corrupt LZF-compressed data in {what} at {}: {reason}",
                        offset(start)
                    )
                })?;
                Bytes::from(original)
            }
            Length::Encoded(other) => bail!(
                "unknown string encoding {other} (prefix byte 0x{:02X}) for {what} at {}",
                ENCODED | other,
                offset(start)
            ),
        };
        Ok(bytes)
    }
}

/// A length from the file as a `usize`. One too big for memory becomes
/// `usize::MAX`, which then fails the "enough bytes left?" check like any
/// other over-long length.
fn saturating_usize(len: u64) -> usize {
    usize::try_from(len).unwrap_or(usize::MAX)
}

/// Names the value types of rdb.h (`RDB_TYPE_*`). Types 1 to 7 are the
/// abstract types; 9 and up are the compact encodings Redis picks for small
/// or recent values. 8 is unused.
fn value_type_name(value_type: u8) -> Option<&'static str> {
    let name = match value_type {
        0 => "string",
        1 => "list",
        2 => "set",
        3 => "sorted set",
        4 => "hash",
        5 => "sorted set, binary scores",
        6 => "module value, old format",
        7 => "module value",
        9 => "hash, zipmap encoding",
        10 => "list, ziplist encoding",
        11 => "set, intset encoding",
        12 => "sorted set, ziplist encoding",
        13 => "hash, ziplist encoding",
        14 => "list, quicklist encoding",
        15 => "stream",
        16 => "hash, listpack encoding",
        17 => "sorted set, listpack encoding",
        18 => "list, quicklist v2 encoding",
        19 => "stream, v2",
        _ => return None,
    };
    Some(name)
}

/// Does the file end in a checksum that doesn't match its contents?
/// Used only to add a hint to a parse error.
fn checksum_trailer_is_wrong(data: &[u8], version: u32) -> bool {
    if version < FIRST_VERSION_WITH_CHECKSUM || data.len() < 8 {
        return false;
    }
    let (body, trailer) = data.split_at(data.len() - 8);
    let mut stored = [0; 8];
    stored.copy_from_slice(trailer);
    let stored = u64::from_le_bytes(stored);
    stored != 0 && stored != crc64(0, body)
}

/// "byte 123 (0x7b)": decimal for people, hex to find it in `xxd` output.
fn offset(pos: usize) -> String {
    format!("byte {pos} (0x{pos:x})")
}

/// Bytes for an error message: quoted, non-printable bytes escaped, and cut
/// short if long.
fn quoted(bytes: &[u8]) -> String {
    const SHOWN: usize = 64;
    if bytes.len() > SHOWN {
        format!(
            "\"{}\"... ({} bytes)",
            bytes[..SHOWN].escape_ascii(),
            bytes.len()
        )
    } else {
        format!("\"{}\"", bytes.escape_ascii())
    }
}

// ---------------------------------------------------------------------------
// CRC-64 (crc64.c)
// ---------------------------------------------------------------------------

/// The CRC-64 Redis puts at the end of a snapshot: the "Jones" polynomial
/// 0xad93d23594c935a9, bits taken least-significant first ("reflected"),
/// starting from 0 and with no final XOR (crc64.c). Pass the previous result
/// as `crc` to continue over more data, as Redis does while it writes.
fn crc64(mut crc: u64, data: &[u8]) -> u64 {
    for &byte in data {
        let index = (crc ^ u64::from(byte)) as u8;
        crc = CRC64_TABLE[usize::from(index)] ^ (crc >> 8);
    }
    crc
}

/// Byte-at-a-time lookup table, computed by the compiler. Redis's crcspeed.c
/// uses eight such tables to go faster; one is plenty here.
const CRC64_TABLE: [u64; 256] = crc64_table();

const fn crc64_table() -> [u64; 256] {
    // A reflected CRC shifts right, so it uses the polynomial bit-reversed.
    let poly = 0xad93_d235_94c9_35a9_u64.reverse_bits();
    let mut table = [0; 256];
    let mut i = 0;
    // `for` loops aren't allowed in a const fn; `while` is.
    while i < 256 {
        let mut crc = i as u64;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ poly
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

// ---------------------------------------------------------------------------
// LZF (lzf_c.c, lzf_d.c)
// ---------------------------------------------------------------------------
//
// An LZF stream is a sequence of items, each starting with a control byte:
//
//   000LLLLL + L+1 bytes             literal run: copy the next 1..=32 bytes
//   LLLooooo oooooooo                back-reference: copy L+2 (3..=8) bytes
//                                    starting o+1 (1..=8192) bytes back
//   111ooooo LLLLLLLL oooooooo       the same, copying L+9 (9..=264) bytes
//
// Any stream that follows these rules is valid; our compressor need not
// produce the same bytes as Redis's to be readable by it.

const LZF_MAX_LITERAL: usize = 32;
const LZF_MIN_MATCH: usize = 3;
const LZF_MAX_MATCH: usize = 264;
const LZF_MAX_DISTANCE: usize = 1 << 13;
/// The most output one input byte can stand for: 264 bytes from a 3-byte
/// back-reference. A stated length beyond this ratio is corrupt.
const LZF_MAX_EXPANSION: u64 = 88;

/// Compresses `input`, or returns `None` if the result would be longer than
/// `max_len` (the same contract as `lzf_compress` returning 0).
fn lzf_compress(input: &[u8], max_len: usize) -> Option<Vec<u8>> {
    // Where each 3-byte sequence was last seen, by hash, as position + 1 (0 =
    // never). Collisions only cost a missed match; the bytes are compared
    // before a match is used.
    const HASH_BITS: u32 = 12;
    let mut last_seen = vec![0_usize; 1 << HASH_BITS];
    let hash = |at: usize| {
        let three = u32::from_be_bytes([0, input[at], input[at + 1], input[at + 2]]);
        // Multiplicative hashing: the top bits of the product mix all inputs.
        (three.wrapping_mul(2_654_435_761) >> (32 - HASH_BITS)) as usize
    };

    let mut out = Vec::with_capacity(max_len);
    let mut literal_start = 0;
    let mut pos = 0;
    while pos + LZF_MIN_MATCH <= input.len() {
        let slot = hash(pos);
        let candidate = last_seen[slot];
        last_seen[slot] = pos + 1;

        if candidate > 0 {
            let from = candidate - 1;
            let distance = pos - from;
            if distance <= LZF_MAX_DISTANCE && input[from..from + 3] == input[pos..pos + 3] {
                // The match may run into the bytes it produces ("aaaa..."
                // matches itself one byte back); the decoder allows that.
                let limit = LZF_MAX_MATCH.min(input.len() - pos);
                let mut len = LZF_MIN_MATCH;
                while len < limit && input[from + len] == input[pos + len] {
                    len += 1;
                }
                push_literals(&mut out, &input[literal_start..pos]);
                push_back_reference(&mut out, distance, len);
                if out.len() > max_len {
                    return None;
                }
                // Remember the sequences inside the match too, so later data
                // can refer back to them.
                for inside in pos + 1..(pos + len).min(input.len() - 2) {
                    last_seen[hash(inside)] = inside + 1;
                }
                pos += len;
                literal_start = pos;
                continue;
            }
        }

        pos += 1;
        // Give up early on data that isn't compressing: the pending literals
        // alone already overflow the budget.
        if out.len() + (pos - literal_start) > max_len {
            return None;
        }
    }
    push_literals(&mut out, &input[literal_start..]);
    (out.len() <= max_len).then_some(out)
}

fn push_literals(out: &mut Vec<u8>, literals: &[u8]) {
    for run in literals.chunks(LZF_MAX_LITERAL) {
        out.push((run.len() - 1) as u8);
        out.extend_from_slice(run);
    }
}

fn push_back_reference(out: &mut Vec<u8>, distance: usize, len: usize) {
    let offset = distance - 1; // 13 bits: high 5 go in the control byte
    let stored_len = len - 2;
    if stored_len < 7 {
        out.push(((stored_len as u8) << 5) | (offset >> 8) as u8);
    } else {
        out.push((7 << 5) | (offset >> 8) as u8);
        out.push((stored_len - 7) as u8);
    }
    out.push(offset as u8);
}

/// Decompresses an LZF stream that should expand to exactly `expected_len`
/// bytes, checking every step as `lzf_decompress` does with `CHECK_INPUT`.
fn lzf_decompress(input: &[u8], expected_len: u64) -> Result<Vec<u8>, String> {
    // The stated length is untrusted: check it is possible before reserving it.
    let most_possible = (input.len() as u64).saturating_mul(LZF_MAX_EXPANSION);
    if expected_len > most_possible {
        return Err(format!(
            "{} compressed bytes cannot expand to the stated {expected_len} bytes",
            input.len()
        ));
    }
    let expected_len = saturating_usize(expected_len);
    let mut out = Vec::with_capacity(expected_len);

    let mut pos = 0;
    while let Some(&control) = input.get(pos) {
        pos += 1;
        if control < 32 {
            let run = usize::from(control) + 1;
            let literals = input
                .get(pos..pos + run)
                .ok_or("a literal run goes past the end of the data")?;
            if out.len() + run > expected_len {
                return Err("the data expands past the stated length".into());
            }
            out.extend_from_slice(literals);
            pos += run;
        } else {
            let mut len = usize::from(control >> 5);
            if len == 7 {
                len += usize::from(*input.get(pos).ok_or("a back-reference is cut short")?);
                pos += 1;
            }
            let low = *input.get(pos).ok_or("a back-reference is cut short")?;
            pos += 1;
            let len = len + 2;
            let distance = ((usize::from(control & 0x1F) << 8) | usize::from(low)) + 1;
            if distance > out.len() {
                return Err("a back-reference points before the start of the data".into());
            }
            if out.len() + len > expected_len {
                return Err("the data expands past the stated length".into());
            }
            // Byte by byte, because the source may overlap what we are writing.
            for _ in 0..len {
                out.push(out[out.len() - distance]);
            }
        }
    }

    if out.len() != expected_len {
        return Err(format!(
            "the data expands to {} bytes, not the stated {expected_len}",
            out.len()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &[u8], value: &[u8], expires_at_ms: Option<i64>) -> Entry {
        Entry {
            key: Bytes::copy_from_slice(key),
            value: Bytes::copy_from_slice(value),
            expires_at_ms,
        }
    }

    fn encode_entries(entries: &[Entry]) -> Vec<u8> {
        encode(
            entries.iter().map(|e| (&e.key, &e.value, e.expires_at_ms)),
            1_700_000_000,
        )
    }

    /// A mix of every string form we write.
    fn sample_entries() -> Vec<Entry> {
        vec![
            entry(b"greeting", b"hello", None),
            entry(b"counter", b"42", None),
            entry(b"big", b"-2147483648", Some(1_900_000_000_123)),
            entry(b"session", b"abc123", Some(1_700_000_600_000)),
            entry(b"long", &b"a".repeat(200), None),
            entry(b"bin\r\n\0key", b"\x00\xff\r\n", None),
            entry(b"12", b"", None),
        ]
    }

    /// Builds a file by hand: header, `body`, EOF, checksum.
    fn file_with_body(version: &str, body: &[u8]) -> Vec<u8> {
        let mut out = format!("REDIS{version}").into_bytes();
        out.extend_from_slice(body);
        out.push(OP_EOF);
        let checksum = crc64(0, &out);
        out.extend_from_slice(&checksum.to_le_bytes());
        out
    }

    fn string_bytes(s: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_string(&mut out, s);
        out
    }

    fn len_bytes(len: u64) -> Vec<u8> {
        let mut out = Vec::new();
        write_len(&mut out, len);
        out
    }

    fn error_of(data: &[u8]) -> String {
        decode(data).expect_err("decode should fail").to_string()
    }

    #[test]
    fn crc64_matches_redis_check_values() {
        // The values crc64.c's own test prints.
        assert_eq!(crc64(0, b"123456789"), 0xe9c6_d914_c4b8_d9ca);
        // crc64.c hashes `sizeof(li)`, which includes the C string's NUL.
        let lorem = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed \
do eiusmod tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, \
quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat. Duis \
aute irure dolor in reprehenderit in voluptate velit esse cillum dolore eu fugiat nulla \
pariatur. Excepteur sint occaecat cupidatat non proident, sunt in culpa qui officia \
deserunt mollit anim id est laborum.\0";
        assert_eq!(crc64(0, lorem), 0xc779_4709_e696_83b3);
    }

    #[test]
    fn crc64_can_be_continued() {
        let whole = crc64(0, b"123456789");
        assert_eq!(crc64(crc64(0, b"1234"), b"56789"), whole);
    }

    #[test]
    fn lzf_round_trips() {
        let mut pseudo_random = Vec::new();
        let mut state = 0x1234_5678_u32;
        for _ in 0..5000 {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            pseudo_random.push(state as u8);
        }
        let inputs: Vec<Vec<u8>> = vec![
            b"a".repeat(200),
            b"a".repeat(100_000),
            b"hello world, hello world, hello world, hello world!".to_vec(),
            b"abc".repeat(1000),
            // Repeats further back than a back-reference can reach.
            [
                pseudo_random.clone(),
                b"x".repeat(9000),
                pseudo_random.clone(),
            ]
            .concat(),
            (0..=255u8).cycle().take(10_000).collect(),
        ];
        for input in inputs {
            let compressed = lzf_compress(&input, input.len()).expect("compressible");
            assert!(compressed.len() < input.len());
            let back = lzf_decompress(&compressed, input.len() as u64).unwrap();
            assert_eq!(back, input);
        }
        // Random bytes don't shrink, so the compressor gives up.
        assert_eq!(lzf_compress(&pseudo_random, pseudo_random.len() - 4), None);
    }

    #[test]
    fn lzf_known_bytes() {
        // "aaaaaaaaaa": the literal "a", then copy 9 bytes from 1 byte back.
        let stream = [0x00, b'a', 0xE0, 0x00, 0x00];
        assert_eq!(lzf_compress(&b"a".repeat(10), 10).unwrap(), stream);
        assert_eq!(lzf_decompress(&stream, 10).unwrap(), b"a".repeat(10));
    }

    #[test]
    fn lzf_rejects_corrupt_streams() {
        // A back-reference before anything has been written.
        assert!(lzf_decompress(&[0x20, 0x00], 3).is_err());
        // A literal run longer than the data.
        assert!(lzf_decompress(&[0x05, b'a'], 6).is_err());
        // Wrong stated length, in both directions.
        assert!(lzf_decompress(&[0x00, b'a'], 2).is_err());
        assert!(lzf_decompress(&[0x01, b'a', b'b'], 1).is_err());
        // An impossible length is refused before anything is allocated.
        assert!(lzf_decompress(&[0x00, b'a'], u64::MAX).is_err());
    }

    #[test]
    fn integer_encodings() {
        assert_eq!(string_bytes(b"0"), [0xC0, 0x00]);
        assert_eq!(string_bytes(b"-1"), [0xC0, 0xFF]);
        assert_eq!(string_bytes(b"127"), [0xC0, 0x7F]);
        assert_eq!(string_bytes(b"-128"), [0xC0, 0x80]);
        assert_eq!(string_bytes(b"128"), [0xC1, 0x80, 0x00]);
        assert_eq!(string_bytes(b"-32768"), [0xC1, 0x00, 0x80]);
        assert_eq!(string_bytes(b"32768"), [0xC2, 0x00, 0x80, 0x00, 0x00]);
        assert_eq!(string_bytes(b"2147483647"), [0xC2, 0xFF, 0xFF, 0xFF, 0x7F]);
        assert_eq!(string_bytes(b"-2147483648"), [0xC2, 0x00, 0x00, 0x00, 0x80]);
        // Not canonical, or too big for 32 bits: stored as text.
        for text in [
            &b"2147483648"[..],
            b"-2147483649",
            b"007",
            b"+5",
            b"-0",
            b" 1",
            b"1 ",
            b"1.0",
            b"",
            b"-",
        ] {
            let mut expected = vec![text.len() as u8];
            expected.extend_from_slice(text);
            assert_eq!(string_bytes(text), expected, "{}", quoted(text));
        }
    }

    #[test]
    fn integer_encodings_read_back_as_text() {
        for text in ["0", "-1", "127", "128", "-32768", "65535", "-2147483648"] {
            let bytes = string_bytes(text.as_bytes());
            let mut reader = Reader {
                data: &bytes,
                pos: 0,
            };
            assert_eq!(reader.string("test").unwrap(), text.as_bytes());
            assert_eq!(reader.remaining(), 0);
        }
    }

    #[test]
    fn length_encodings() {
        let cases: [(u64, &[u8]); 8] = [
            (0, &[0x00]),
            (63, &[0x3F]),
            (64, &[0x40, 0x40]),
            (300, &[0x41, 0x2C]),
            (16383, &[0x7F, 0xFF]),
            (16384, &[0x80, 0x00, 0x00, 0x40, 0x00]),
            (u64::from(u32::MAX), &[0x80, 0xFF, 0xFF, 0xFF, 0xFF]),
            (1 << 32, &[0x81, 0, 0, 0, 1, 0, 0, 0, 0]),
        ];
        for (len, expected) in cases {
            assert_eq!(len_bytes(len), expected, "length {len}");
            let mut reader = Reader {
                data: expected,
                pos: 0,
            };
            assert_eq!(reader.plain_len("test").unwrap(), len);
        }
    }

    #[test]
    fn long_strings_are_compressed_only_when_it_pays() {
        // 21+ compressible bytes: LZF marker, compressed length, original length.
        let encoded = string_bytes(&b"a".repeat(200));
        assert_eq!(encoded[0], ENCODED | ENC_LZF);
        assert!(encoded.len() < 20);
        // 20 bytes is never tried, however repetitive.
        assert_eq!(string_bytes(&b"a".repeat(20))[0], 20);
        // Varied text doesn't compress: stored raw.
        let text = b"The quick brown fox jumps over the lazy dog";
        assert_eq!(string_bytes(text)[0], text.len() as u8);
    }

    #[test]
    fn round_trip_with_expiries() {
        let entries = sample_entries();
        let file = encode_entries(&entries);
        assert_eq!(decode(&file).unwrap(), entries);
    }

    #[test]
    fn round_trip_many_keys() {
        let entries: Vec<Entry> = (0..10_000)
            .map(|i| {
                let expiry = (i % 3 == 0).then_some(1_800_000_000_000 + i64::from(i));
                entry(
                    format!("key:{i}").as_bytes(),
                    format!("{i}").repeat(i as usize % 20).as_bytes(),
                    expiry,
                )
            })
            .collect();
        let file = encode_entries(&entries);
        assert_eq!(decode(&file).unwrap(), entries);
    }

    #[test]
    fn empty_snapshot() {
        let file = encode_entries(&[]);
        // No SELECTDB or RESIZEDB for an empty database, as in Redis.
        assert!(!file.contains(&OP_SELECTDB));
        assert_eq!(decode(&file).unwrap(), []);
    }

    #[test]
    fn exact_layout_of_a_one_key_file() {
        let file = encode_entries(&[entry(b"k", b"v", Some(0x0102_0304_0506))]);
        let mut expected = b"REDIS0010".to_vec();
        expected.extend_from_slice(b"\xFA\x09redis-ver\x057.0.0");
        expected.extend_from_slice(b"\xFA\x0Aredis-bits\xC0\x40");
        // 1_700_000_000 = 0x6553F100, as INT32 little-endian.
        expected.extend_from_slice(b"\xFA\x05ctime\xC2\x00\xF1\x53\x65");
        expected.extend_from_slice(b"\xFA\x08used-mem\xC0\x02");
        expected.extend_from_slice(b"\xFA\x08aof-base\xC0\x00");
        expected.extend_from_slice(b"\xFE\x00\xFB\x01\x01");
        expected.extend_from_slice(b"\xFC\x06\x05\x04\x03\x02\x01\x00\x00");
        expected.extend_from_slice(b"\x00\x01k\x01v\xFF");
        let checksum = crc64(0, &expected);
        expected.extend_from_slice(&checksum.to_le_bytes());
        assert_eq!(file, expected);
    }

    #[test]
    fn flipped_byte_fails_the_checksum() {
        let mut file = encode_entries(&sample_entries());
        let at = file
            .windows(5)
            .position(|w| w == b"hello")
            .expect("value is stored raw");
        file[at] ^= 0x20; // "hello" -> "Hello": still parses, but the hash differs
        let message = error_of(&file);
        assert!(
            message.starts_with("checksum mismatch: file says 0x"),
            "{message}"
        );
        assert!(message.contains(", contents hash to 0x"), "{message}");
    }

    #[test]
    fn zero_checksum_means_not_checked() {
        let mut file = encode_entries(&sample_entries());
        let len = file.len();
        file[len - 8..].fill(0);
        assert_eq!(decode(&file).unwrap(), sample_entries());
    }

    #[test]
    fn unsupported_type_is_named() {
        // A set (type 2) holding one member, as `rdbSaveObject` writes it.
        let mut body = vec![OP_SELECTDB, 0, 2];
        body.extend(string_bytes(b"myset"));
        body.extend([1, 1, b'x']);
        let message = error_of(&file_with_body("0010", &body));
        assert_eq!(
            message,
            "unsupported value type 2 (set) for key \"myset\" at byte 11 (0xb); \
             only strings (type 0) are supported"
        );
    }

    #[test]
    fn unknown_type_and_opcodes_are_reported() {
        let message = error_of(&file_with_body("0010", &[8]));
        assert_eq!(message, "unknown value type 8 at byte 9 (0x9)");

        let message = error_of(&file_with_body("0010", &[OP_MODULE_AUX, 0]));
        assert!(
            message.starts_with("unsupported opcode 0xF7 (MODULE_AUX"),
            "{message}"
        );

        let mut body = vec![OP_FUNCTION2];
        body.extend(string_bytes(b"#!lua name=lib\n..."));
        let message = error_of(&file_with_body("0010", &body));
        assert!(
            message.starts_with("unsupported opcode 0xF5 (FUNCTION2"),
            "{message}"
        );
    }

    #[test]
    fn other_databases_are_refused() {
        let mut body = vec![OP_SELECTDB, 3, TYPE_STRING];
        body.extend(string_bytes(b"elsewhere"));
        body.extend(string_bytes(b"v"));
        let message = error_of(&file_with_body("0010", &body));
        assert!(
            message.starts_with("keys in database 3 are not supported"),
            "{message}"
        );
        // Selecting another database without storing keys in it is harmless.
        let body = [OP_SELECTDB, 3, OP_SELECTDB, 0];
        assert_eq!(decode(&file_with_body("0010", &body)).unwrap(), []);
    }

    #[test]
    fn versions() {
        let message = error_of(&file_with_body("0011", &[]));
        assert_eq!(
            message,
            "unsupported RDB version 11 (this server reads versions 1 to 10)"
        );
        assert!(error_of(&file_with_body("0000", &[])).starts_with("unsupported RDB version 0"));
        assert!(error_of(&file_with_body("00x1", &[])).starts_with("bad RDB version \"00x1\""));
        assert!(error_of(b"RADIS0010").starts_with("not an RDB file"));
        assert!(decode(&file_with_body("0009", &[])).is_ok());
    }

    #[test]
    fn old_files_without_checksum_and_old_opcodes() {
        // Version 4: no checksum; expiry in seconds; eviction hints to skip.
        let mut file = b"REDIS0004".to_vec();
        file.extend([OP_SELECTDB, 0]);
        file.push(OP_EXPIRETIME);
        file.extend(1_500_000_000_i32.to_le_bytes());
        file.extend([OP_IDLE, 0x41, 0x00, OP_FREQ, 7, TYPE_STRING]);
        file.extend(string_bytes(b"old"));
        file.extend(string_bytes(b"value"));
        file.push(OP_EOF);
        assert_eq!(
            decode(&file).unwrap(),
            [entry(b"old", b"value", Some(1_500_000_000_000))]
        );
    }

    #[test]
    fn corrupt_lengths_give_errors_not_allocations() {
        // A key claiming 2^62 bytes.
        let mut body = vec![TYPE_STRING, LEN_64BIT];
        body.extend((1_u64 << 62).to_be_bytes());
        let message = error_of(&file_with_body("0010", &body));
        assert!(
            message.starts_with("truncated file at byte 19 (0x13): a key needs"),
            "{message}"
        );

        // An LZF value claiming to expand to 2^40 bytes.
        let mut body = vec![TYPE_STRING, 1, b'k', ENCODED | ENC_LZF, 2, LEN_64BIT];
        body.extend((1_u64 << 40).to_be_bytes());
        body.extend([0x00, b'a']);
        let message = error_of(&file_with_body("0010", &body));
        assert!(
            message.starts_with("corrupt LZF-compressed data"),
            "{message}"
        );

        // A RESIZEDB hint of 2^60 keys must not be reserved.
        let mut body = vec![OP_RESIZEDB, LEN_64BIT];
        body.extend((1_u64 << 60).to_be_bytes());
        body.push(0);
        assert_eq!(decode(&file_with_body("0010", &body)).unwrap(), []);
    }

    #[test]
    fn truncated_and_trailing_data() {
        let file = encode_entries(&sample_entries());
        let message = error_of(&file[..40]);
        assert!(message.starts_with("truncated file at byte "), "{message}");
        let message = error_of(&file[..file.len() - 3]);
        assert!(message.starts_with("truncated file at byte "), "{message}");

        let mut longer = file.clone();
        longer.extend_from_slice(b"junk");
        let message = error_of(&longer);
        assert!(
            message.starts_with("4 unexpected bytes after the end"),
            "{message}"
        );
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let mut body = Vec::new();
        for _ in 0..2 {
            body.push(TYPE_STRING);
            body.extend(string_bytes(b"twice"));
            body.extend(string_bytes(b"v"));
        }
        assert!(error_of(&file_with_body("0010", &body)).starts_with("duplicate key \"twice\""));
    }

    #[test]
    fn no_panics_on_damaged_input() {
        let file = encode_entries(&sample_entries());

        // Every proper prefix is an error (and never a panic).
        for len in 0..file.len() {
            assert!(decode(&file[..len]).is_err(), "prefix of {len} bytes");
        }

        // Random byte changes, with the checksum both on and off: with it off,
        // damage reaches the parser instead of stopping at the checksum.
        let mut unchecked = file.clone();
        let len = unchecked.len();
        unchecked[len - 8..].fill(0);
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for original in [&file, &unchecked] {
            for _ in 0..3000 {
                let mut damaged = original.clone();
                for _ in 0..1 + next() % 3 {
                    let at = (next() % damaged.len() as u64) as usize;
                    damaged[at] ^= (next() % 255 + 1) as u8;
                }
                let _ = decode(&damaged);
            }
        }

        // Pure noise after a valid header.
        for _ in 0..1000 {
            let mut noise = b"REDIS0010".to_vec();
            noise.extend((0..next() % 64).map(|_| next() as u8));
            let _ = decode(&noise);
        }
    }
}
