//! RESP, the REdis Serialization Protocol.
//!
//! Three pieces live here:
//!
//! * [`Frame`], one RESP value as a Rust `enum`. Every place that builds or
//!   takes apart a value has to say which variant it means, so the compiler
//!   points at every `match` that needs a new arm when the protocol grows.
//! * [`RequestParser`], which takes client commands off the front of the
//!   connection's read buffer, with Redis's own limits and error messages.
//! * [`Frame::encode`], which writes a reply in RESP2 or RESP3.
//!
//! Parsing is a cursor walking a byte slice. It never waits for the socket:
//! when the slice ends in the middle of a command it reports "incomplete",
//! and the connection tries again after the next read has appended more
//! bytes. The arguments that did arrive are kept, so the next try starts
//! where this one stopped: a command in a thousand pieces is still read
//! once.

use std::fmt;
use std::io::Write;
use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};

/// One RESP value.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// `+OK\r\n`: a short status line without CR or LF in it.
    Simple(String),
    /// `-ERR unknown command\r\n`: the first word is the error code.
    Error(String),
    /// `:1000\r\n`
    Integer(i64),
    /// `$5\r\nhello\r\n`: any bytes, CR and LF included (binary safe).
    Bulk(Bytes),
    /// "No value", as GET answers for a missing key: `$-1\r\n` in RESP2,
    /// `_\r\n` in RESP3.
    Null,
    /// `*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`
    Array(Vec<Frame>),
    /// "No array": `*-1\r\n` in RESP2, `_\r\n` in RESP3.
    NullArray,
    /// RESP3 `%1\r\n+key\r\n:1\r\n`. A RESP2 client gets a flat array of
    /// keys and values instead, which is what Redis sends it too.
    Map(Vec<(Frame, Frame)>),
}

/// The reply encoding a connection asked for with HELLO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Resp2,
    Resp3,
}

/// Why a client's bytes are not a request. [`fmt::Display`] gives the line
/// Redis replies with before it closes the connection.
#[derive(Debug, PartialEq, Eq)]
pub struct ProtocolError(String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ERR Protocol error: {}", self.0)
    }
}

impl std::error::Error for ProtocolError {}

/// The longest bulk string a client may send (Redis's `proto-max-bulk-len`).
const MAX_BULK_LEN: i64 = 512 * 1024 * 1024;
/// The most arguments one command may claim to have (Redis: `INT_MAX`).
const MAX_ARGS: i64 = i32::MAX as i64;
/// How long a line may grow while we wait for its CR (`PROTO_INLINE_MAX_SIZE`).
const MAX_LINE: usize = 64 * 1024;
/// The most arguments reserved up front, however many a client claims: the
/// vector grows with the arguments that really arrive, never with a number
/// an attacker wrote.
const PREALLOCATED_ARGS: usize = 1024;
/// How deeply arrays may nest in a reply before we call it hostile.
const MAX_DEPTH: usize = 64;

/// The parser stops for one of two reasons.
enum Stop {
    /// The bytes so far are a valid beginning; more must arrive.
    Incomplete,
    /// The bytes can never become a valid frame.
    Invalid(ProtocolError),
}

fn invalid(message: impl Into<String>) -> Stop {
    Stop::Invalid(ProtocolError(message.into()))
}

/// Takes commands off the front of a connection's read buffer, resuming
/// where the previous call stopped.
///
/// A command may arrive in many reads. Parsing it from its start after each
/// one would read its first arguments again every time: quadratic in its
/// length, and a client sending a million one-byte arguments 16 KiB at a
/// time cost 1.4 s of CPU that way. So, as Redis's `processMultibulkBuffer`
/// does with `c->multibulklen` and `c->bulklen`, each argument is taken off
/// the buffer as soon as it is whole, and the command waits here, half
/// built, for the rest.
#[derive(Default)]
pub struct RequestParser {
    /// The multibulk command under way, if its `*<count>` line has arrived.
    partial: Option<Partial>,
}

struct Partial {
    args: Vec<Bytes>,
    /// Arguments still to come.
    remaining: usize,
    /// Bytes of the command taken off the buffer so far.
    taken: usize,
}

impl RequestParser {
    /// Takes the next command off the front of `input`.
    ///
    /// Returns `Ok(Some((args, size)))` for a whole command, `size` being
    /// how many bytes it took up in all; `Ok(None)` when the rest of it has
    /// not arrived yet; and `Err` when the bytes can never be a command.
    /// `args` is empty for the requests Redis silently skips: a blank inline
    /// line, `*0` and `*-1`.
    ///
    /// As in Redis, a request that starts with `*` is a RESP array of bulk
    /// strings (what client libraries send) and anything else is an inline
    /// command, a line of words as typed into `nc` or `telnet`.
    pub fn next(
        &mut self,
        input: &mut BytesMut,
    ) -> Result<Option<(Vec<Bytes>, usize)>, ProtocolError> {
        let partial = match &mut self.partial {
            Some(partial) => partial,
            None if input.is_empty() => return Ok(None),
            None if input[0] != b'*' => {
                return match parse_inline(input) {
                    Ok((args, used)) => {
                        input.advance(used);
                        Ok(Some((args, used)))
                    }
                    Err(Stop::Incomplete) => Ok(None),
                    Err(Stop::Invalid(error)) => Err(error),
                };
            }
            None => {
                let mut cursor = Cursor { buf: input, pos: 1 };
                let count = match multibulk_count(&mut cursor) {
                    Ok(count) => count,
                    Err(Stop::Incomplete) => return Ok(None),
                    Err(Stop::Invalid(error)) => return Err(error),
                };
                let taken = cursor.pos;
                input.advance(taken);
                self.partial.insert(Partial {
                    args: Vec::with_capacity(count.min(PREALLOCATED_ARGS)),
                    remaining: count,
                    taken,
                })
            }
        };
        while partial.remaining > 0 {
            let mut cursor = Cursor { buf: input, pos: 0 };
            let range = match bulk_argument(&mut cursor) {
                Ok(range) => range,
                Err(Stop::Incomplete) => return Ok(None),
                Err(Stop::Invalid(error)) => return Err(error),
            };
            let used = cursor.pos;
            partial.args.push(Bytes::copy_from_slice(&input[range]));
            input.advance(used);
            partial.taken += used;
            partial.remaining -= 1;
        }
        Ok(self
            .partial
            .take()
            .map(|partial| (partial.args, partial.taken)))
    }

    /// How many bytes of an unfinished command were already taken off the
    /// buffer: they count towards the client's query buffer limit.
    pub fn pending(&self) -> usize {
        self.partial.as_ref().map_or(0, |partial| partial.taken)
    }
}

/// The `<count>\r\n` after a `*`: how many arguments follow (none for `*0`
/// and `*-1`).
fn multibulk_count(cursor: &mut Cursor) -> Result<usize, Stop> {
    let count = cursor.line("too big mbulk count string")?;
    match parse_integer(count) {
        Some(n) if n <= MAX_ARGS => Ok(usize::try_from(n).unwrap_or(0)),
        _ => Err(invalid("invalid multibulk length")),
    }
}

/// One `$<len>\r\n<data>\r\n` argument: where its data lies.
fn bulk_argument(cursor: &mut Cursor) -> Result<Range<usize>, Stop> {
    let header = cursor.line("too big bulk count string")?;
    match header.first() {
        Some(b'$') => {}
        // Redis echoes the offending byte; a CR or LF would break the
        // reply line, so like Redis we show it as a space.
        other => {
            let got = match other.copied().unwrap_or(b'\r') {
                b'\r' | b'\n' => ' ',
                byte => char::from(byte),
            };
            return Err(invalid(format!("expected '$', got '{got}'")));
        }
    }
    let len = match parse_integer(&header[1..]) {
        Some(len) if (0..=MAX_BULK_LEN).contains(&len) => len as usize,
        _ => return Err(invalid("invalid bulk length")),
    };
    cursor.bulk(len)
}

/// One line of space-separated words, as Redis's `processInlineBuffer` reads
/// it: double quotes with C-style escapes, single quotes, `\n` or `\r\n`.
fn parse_inline(buf: &[u8]) -> Result<(Vec<Bytes>, usize), Stop> {
    let Some(newline) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() > MAX_LINE {
            Err(invalid("too big inline request"))
        } else {
            Err(Stop::Incomplete)
        };
    };
    let line = buf[..newline]
        .strip_suffix(b"\r")
        .unwrap_or(&buf[..newline]);
    let args = split_args(line).ok_or_else(|| invalid("unbalanced quotes in request"))?;
    Ok((args, newline + 1))
}

/// Splits an inline command into words, like Redis's `sdssplitargs`.
/// Returns `None` for an unterminated quote, or a closing quote that is not
/// followed by a space (`"foo"bar`).
fn split_args(line: &[u8]) -> Option<Vec<Bytes>> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && is_space(line[i]) {
            i += 1;
        }
        if i == line.len() {
            return Some(args);
        }
        let mut word = Vec::new();
        let mut quote = None;
        loop {
            let byte = line.get(i).copied();
            match (quote, byte) {
                (Some(_), None) => return None, // the line ended inside quotes
                (None, None | Some(b' ' | b'\t' | b'\r' | b'\n')) => break,
                (None, Some(q @ (b'"' | b'\''))) => quote = Some(q),
                (None, Some(b)) => word.push(b),
                (Some(q), Some(b)) if b == q => {
                    match line.get(i + 1) {
                        Some(&next) if !is_space(next) => return None,
                        _ => {}
                    }
                    i += 1;
                    break;
                }
                (Some(b'"'), Some(b'\\')) => {
                    let (byte, used) = unescape(&line[i + 1..])?;
                    word.push(byte);
                    i += used;
                }
                (Some(b'\''), Some(b'\\')) if line.get(i + 1) == Some(&b'\'') => {
                    word.push(b'\'');
                    i += 1;
                }
                (Some(_), Some(b)) => word.push(b),
            }
            i += 1;
        }
        args.push(Bytes::from(word));
    }
}

/// C's `isspace`, which `sdssplitargs` uses to skip from one word to the
/// next. Rust's `is_ascii_whitespace` leaves out the vertical tab. (A word
/// without quotes ends only at a space, tab, CR or LF, as in Redis: a
/// vertical tab inside one is part of it.)
fn is_space(byte: u8) -> bool {
    byte.is_ascii_whitespace() || byte == b'\x0b'
}

/// Decodes the escape after a backslash inside double quotes: `\xHH`, `\n`,
/// `\r`, `\t`, `\b`, `\a`, or any other byte standing for itself. Returns
/// the byte and how many input bytes it used.
fn unescape(rest: &[u8]) -> Option<(u8, usize)> {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    match rest {
        [b'x', hi, lo, ..] if hex(*hi).is_some() && hex(*lo).is_some() => {
            Some((hex(*hi)? * 16 + hex(*lo)?, 3))
        }
        [b'n', ..] => Some((b'\n', 1)),
        [b'r', ..] => Some((b'\r', 1)),
        [b't', ..] => Some((b'\t', 1)),
        [b'b', ..] => Some((0x08, 1)),
        [b'a', ..] => Some((0x07, 1)),
        [other, ..] => Some((*other, 1)),
        [] => None, // a backslash at the very end: the quote never closes
    }
}

impl Frame {
    /// Reads one RESP value of any type from the front of `buf`, as a client
    /// reads replies: `Ok(Some((frame, n)))` when the first `n` bytes hold a
    /// whole value, `Ok(None)` when more bytes are needed.
    ///
    /// The server reads requests with [`parse_request`], since a request may
    /// only be an array of bulk strings; this general reader is for the other
    /// side of the wire. The tests use it now, and the replica (step 08) and
    /// the load generator (step 10) read their replies with it.
    #[allow(dead_code)]
    pub fn parse(buf: &[u8]) -> Result<Option<(Frame, usize)>, ProtocolError> {
        let mut cursor = Cursor { buf, pos: 0 };
        match cursor.frame(0) {
            Ok(frame) => Ok(Some((frame, cursor.pos))),
            Err(Stop::Incomplete) => Ok(None),
            Err(Stop::Invalid(error)) => Err(error),
        }
    }

    /// Appends this value to `out`, encoded for `protocol`.
    pub fn encode(&self, out: &mut Vec<u8>, protocol: Protocol) {
        // Writing into a Vec cannot fail, so the `io::Result`s are ignored.
        match self {
            Frame::Simple(text) => {
                let _ = write!(out, "+{text}\r\n");
            }
            Frame::Error(text) => {
                let _ = write!(out, "-{text}\r\n");
            }
            Frame::Integer(n) => {
                let _ = write!(out, ":{n}\r\n");
            }
            Frame::Bulk(bytes) => {
                let _ = write!(out, "${}\r\n", bytes.len());
                out.extend_from_slice(bytes);
                out.extend_from_slice(b"\r\n");
            }
            Frame::Null => out.extend_from_slice(match protocol {
                Protocol::Resp2 => b"$-1\r\n",
                Protocol::Resp3 => b"_\r\n",
            }),
            Frame::Array(items) => {
                let _ = write!(out, "*{}\r\n", items.len());
                for item in items {
                    item.encode(out, protocol);
                }
            }
            Frame::NullArray => out.extend_from_slice(match protocol {
                Protocol::Resp2 => b"*-1\r\n",
                Protocol::Resp3 => b"_\r\n",
            }),
            Frame::Map(pairs) => {
                let _ = match protocol {
                    Protocol::Resp2 => write!(out, "*{}\r\n", pairs.len() * 2),
                    Protocol::Resp3 => write!(out, "%{}\r\n", pairs.len()),
                };
                for (key, value) in pairs {
                    key.encode(out, protocol);
                    value.encode(out, protocol);
                }
            }
        }
    }
}

/// A read position in a byte slice.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// The bytes up to the next CR, moving past the CR and the byte after it.
    /// Like Redis, it trusts that byte to be LF. A line still without its CR
    /// after `MAX_LINE` bytes is refused with `too_long`.
    fn line(&mut self, too_long: &str) -> Result<&'a [u8], Stop> {
        let rest = &self.buf[self.pos..];
        let Some(cr) = rest.iter().position(|&b| b == b'\r') else {
            return Err(if rest.len() > MAX_LINE {
                invalid(too_long)
            } else {
                Stop::Incomplete
            });
        };
        if cr + 1 >= rest.len() {
            return Err(Stop::Incomplete);
        }
        self.pos += cr + 2;
        Ok(&rest[..cr])
    }

    /// Where the next `len` bytes lie, moving past them and their CRLF. As in
    /// Redis, the two bytes after the data are skipped, not checked.
    fn bulk(&mut self, len: usize) -> Result<Range<usize>, Stop> {
        let start = self.pos;
        if self.buf.len() - start < len + 2 {
            return Err(Stop::Incomplete);
        }
        self.pos += len + 2;
        Ok(start..start + len)
    }

    /// Any RESP value: the type byte says which.
    fn frame(&mut self, depth: usize) -> Result<Frame, Stop> {
        let Some(&kind) = self.buf.get(self.pos) else {
            return Err(Stop::Incomplete);
        };
        self.pos += 1;
        let line = self.line("too big line")?;
        let text = || String::from_utf8_lossy(line).into_owned();
        let number = || parse_integer(line).ok_or_else(|| invalid("invalid integer"));
        match kind {
            b'+' => Ok(Frame::Simple(text())),
            b'-' => Ok(Frame::Error(text())),
            b':' => Ok(Frame::Integer(number()?)),
            b'_' if line.is_empty() => Ok(Frame::Null),
            b'$' => match number()? {
                -1 => Ok(Frame::Null),
                len @ 0..=MAX_BULK_LEN => {
                    let range = self.bulk(len as usize)?;
                    Ok(Frame::Bulk(Bytes::copy_from_slice(&self.buf[range])))
                }
                _ => Err(invalid("invalid bulk length")),
            },
            b'*' | b'%' if depth >= MAX_DEPTH => Err(invalid("nesting too deep")),
            b'*' => match number()? {
                -1 => Ok(Frame::NullArray),
                len @ 0..=MAX_ARGS => {
                    let len = len as usize;
                    let mut items = Vec::with_capacity(len.min(PREALLOCATED_ARGS));
                    for _ in 0..len {
                        items.push(self.frame(depth + 1)?);
                    }
                    Ok(Frame::Array(items))
                }
                _ => Err(invalid("invalid multibulk length")),
            },
            b'%' => match number()? {
                len @ 0..=MAX_ARGS => {
                    let len = len as usize;
                    let mut pairs = Vec::with_capacity(len.min(PREALLOCATED_ARGS));
                    for _ in 0..len {
                        pairs.push((self.frame(depth + 1)?, self.frame(depth + 1)?));
                    }
                    Ok(Frame::Map(pairs))
                }
                _ => Err(invalid("invalid map length")),
            },
            other => Err(invalid(format!(
                "unknown type byte '{}'",
                char::from(other).escape_default()
            ))),
        }
    }
}

/// Parses a decimal integer as strictly as Redis's `string2ll`: an optional
/// minus sign, no plus sign, no spaces, no leading zeros, no overflow.
pub fn parse_integer(digits: &[u8]) -> Option<i64> {
    let (negative, magnitude) = match digits {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, digits),
    };
    match magnitude {
        [b'0'] if !negative => return Some(0),
        [b'1'..=b'9', ..] => {}
        _ => return None,
    }
    let mut value: i64 = 0;
    for &digit in magnitude {
        if !digit.is_ascii_digit() {
            return None;
        }
        // Accumulate negatively so that i64::MIN, whose magnitude does not
        // fit in an i64, parses too.
        value = value
            .checked_mul(10)?
            .checked_sub(i64::from(digit - b'0'))?;
    }
    if negative {
        Some(value)
    } else {
        value.checked_neg()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first command in `input`, read by a new parser.
    fn request(input: &[u8]) -> Result<Option<(Vec<Bytes>, usize)>, ProtocolError> {
        RequestParser::default().next(&mut BytesMut::from(input))
    }

    fn args(words: &[&str]) -> Vec<Bytes> {
        words.iter().map(|w| Bytes::from(w.to_string())).collect()
    }

    fn error(input: &[u8]) -> String {
        request(input).expect_err("a protocol error").to_string()
    }

    #[test]
    fn parses_a_multibulk_request() {
        let input = b"*2\r\n$4\r\nECHO\r\n$5\r\nhe\r\no\r\n";
        let (got, used) = request(input).unwrap().unwrap();
        assert_eq!(got, vec![Bytes::from("ECHO"), Bytes::from("he\r\no")]);
        assert_eq!(used, input.len());
    }

    #[test]
    fn parses_only_the_first_of_pipelined_requests() {
        let input = b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n";
        let (got, used) = request(input).unwrap().unwrap();
        assert_eq!(got, args(&["PING"]));
        assert_eq!(used, input.len() / 2);
    }

    #[test]
    fn every_prefix_of_a_request_is_incomplete() {
        let input = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10\r\n0123456789\r\n";
        for end in 0..input.len() {
            assert_eq!(request(&input[..end]), Ok(None), "prefix of {end} bytes");
        }
        assert!(request(input).unwrap().is_some());
    }

    #[test]
    fn a_command_in_pieces_is_read_once() {
        let input = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10\r\n0123456789\r\n*1\r\n$4\r\nPING\r\n";
        let first = input.len() - 14;
        let mut parser = RequestParser::default();
        let mut buf = BytesMut::new();
        // Up to the middle of the third argument: the first two are taken
        // off the buffer at once, and only the unfinished one stays in it.
        buf.extend_from_slice(&input[..29]);
        assert_eq!(parser.next(&mut buf), Ok(None));
        assert_eq!(&buf[..], b"$10\r\n0123");
        assert_eq!(parser.pending(), 4 + 9 + 7);
        buf.extend_from_slice(&input[29..]);
        assert_eq!(
            parser.next(&mut buf),
            Ok(Some((args(&["SET", "k", "0123456789"]), first)))
        );
        assert_eq!(parser.pending(), 0);
        assert_eq!(parser.next(&mut buf), Ok(Some((args(&["PING"]), 14))));
        assert_eq!(parser.next(&mut buf), Ok(None));
        assert!(buf.is_empty());
    }

    #[test]
    fn skips_empty_requests_like_redis() {
        assert_eq!(request(b"*0\r\n"), Ok(Some((vec![], 4))));
        assert_eq!(request(b"*-1\r\n"), Ok(Some((vec![], 5))));
        assert_eq!(request(b"\r\n"), Ok(Some((vec![], 2))));
        assert_eq!(request(b"   \n"), Ok(Some((vec![], 4))));
    }

    #[test]
    fn parses_inline_commands_with_quotes_and_escapes() {
        let input = b"SET  k \"a b\\x41\\n\" 'it\\'s'\r\n";
        let (got, used) = request(input).unwrap().unwrap();
        assert_eq!(got, args(&["SET", "k", "a bA\n", "it's"]));
        assert_eq!(used, input.len());
        let (got, _) = request(b"PING\n").unwrap().unwrap();
        assert_eq!(got, args(&["PING"]));
        // Between words any of C's `isspace`, vertical tab included; in a
        // word, only space, tab, CR and LF end it (both as redis-server).
        let (got, _) = request(b"ECHO \x0bF\x0b\r\n").unwrap().unwrap();
        assert_eq!(got, args(&["ECHO", "F\x0b"]));
        let (got, _) = request(b"ECHO \"a\"\x0bb\n").unwrap().unwrap();
        assert_eq!(got, args(&["ECHO", "a", "b"]));
        assert_eq!(request(b"PING"), Ok(None));
    }

    #[test]
    fn rejects_unbalanced_quotes() {
        for input in [
            &b"ECHO \"abc\r\n"[..],
            b"ECHO 'abc\n",
            b"ECHO \"a\"b\n",
            b"ECHO \"a\\\n",
        ] {
            assert_eq!(
                error(input),
                "ERR Protocol error: unbalanced quotes in request",
                "{input:?}"
            );
        }
    }

    #[test]
    fn protocol_errors_use_redis_wording() {
        assert_eq!(
            error(b"*x\r\n"),
            "ERR Protocol error: invalid multibulk length"
        );
        assert_eq!(
            error(b"*2147483648\r\n"),
            "ERR Protocol error: invalid multibulk length"
        );
        assert_eq!(
            error(b"*1\r\n:1\r\n"),
            "ERR Protocol error: expected '$', got ':'"
        );
        assert_eq!(
            error(b"*1\r\n\r\n"),
            "ERR Protocol error: expected '$', got ' '"
        );
        assert_eq!(
            error(b"*1\r\n$-1\r\n"),
            "ERR Protocol error: invalid bulk length"
        );
        assert_eq!(
            error(b"*1\r\n$x\r\n"),
            "ERR Protocol error: invalid bulk length"
        );
        assert_eq!(
            error(b"*1\r\n$536870913\r\n"),
            "ERR Protocol error: invalid bulk length"
        );
        let long = [b'*']
            .iter()
            .chain(&[b'1'; MAX_LINE + 1])
            .copied()
            .collect::<Vec<_>>();
        assert_eq!(
            error(&long),
            "ERR Protocol error: too big mbulk count string"
        );
        let long = [&b"*1\r\n$"[..], &[b'1'; MAX_LINE + 1]].concat();
        assert_eq!(
            error(&long),
            "ERR Protocol error: too big bulk count string"
        );
        assert_eq!(
            error(&[b'a'; MAX_LINE + 1]),
            "ERR Protocol error: too big inline request"
        );
    }

    #[test]
    fn a_huge_claimed_length_allocates_nothing_up_front() {
        // Legal claims, with nothing behind them: just "incomplete".
        assert_eq!(request(b"*2147483647\r\n"), Ok(None));
        assert_eq!(request(b"*1\r\n$536870912\r\n"), Ok(None));
    }

    #[test]
    fn integers_are_parsed_strictly() {
        assert_eq!(parse_integer(b"0"), Some(0));
        assert_eq!(parse_integer(b"-42"), Some(-42));
        assert_eq!(parse_integer(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_integer(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"+1",
            b"01",
            b"-0",
            b" 1",
            b"1 ",
            b"9223372036854775808",
        ] {
            assert_eq!(parse_integer(bad), None, "{bad:?}");
        }
    }

    /// One encoded example of every variant, with what it should decode to.
    fn examples() -> Vec<(&'static [u8], Frame)> {
        vec![
            (b"+OK\r\n", Frame::Simple("OK".into())),
            (b"-ERR bad\r\n", Frame::Error("ERR bad".into())),
            (b":-12\r\n", Frame::Integer(-12)),
            (b"$4\r\na\r\nb\r\n", Frame::Bulk(Bytes::from("a\r\nb"))),
            (b"$0\r\n\r\n", Frame::Bulk(Bytes::new())),
            (b"$-1\r\n", Frame::Null),
            (b"_\r\n", Frame::Null),
            (b"*-1\r\n", Frame::NullArray),
            (b"*0\r\n", Frame::Array(vec![])),
            (
                b"*3\r\n:1\r\n*1\r\n+x\r\n$-1\r\n",
                Frame::Array(vec![
                    Frame::Integer(1),
                    Frame::Array(vec![Frame::Simple("x".into())]),
                    Frame::Null,
                ]),
            ),
            (
                b"%1\r\n+proto\r\n:3\r\n",
                Frame::Map(vec![(Frame::Simple("proto".into()), Frame::Integer(3))]),
            ),
        ]
    }

    #[test]
    fn parses_every_type() {
        for (input, expected) in examples() {
            assert_eq!(
                Frame::parse(input),
                Ok(Some((expected, input.len()))),
                "{input:?}"
            );
        }
    }

    #[test]
    fn every_truncation_of_every_type_is_incomplete() {
        for (input, _) in examples() {
            for end in 0..input.len() {
                assert_eq!(
                    Frame::parse(&input[..end]),
                    Ok(None),
                    "{input:?} cut at {end}"
                );
            }
        }
    }

    #[test]
    fn encoding_round_trips_through_parsing() {
        for (_, frame) in examples() {
            let mut out = Vec::new();
            frame.encode(&mut out, Protocol::Resp3);
            // RESP3 has a single null, so a null array comes back as Null.
            let expected = match frame {
                Frame::NullArray => Frame::Null,
                other => other,
            };
            assert_eq!(Frame::parse(&out), Ok(Some((expected, out.len()))));
        }
    }

    #[test]
    fn resp2_spells_nulls_and_maps_the_old_way() {
        let map = Frame::Map(vec![(Frame::Bulk("a".into()), Frame::Null)]);
        let mut out = Vec::new();
        map.encode(&mut out, Protocol::Resp2);
        Frame::NullArray.encode(&mut out, Protocol::Resp2);
        assert_eq!(out, b"*2\r\n$1\r\na\r\n$-1\r\n*-1\r\n");
        out.clear();
        map.encode(&mut out, Protocol::Resp3);
        Frame::NullArray.encode(&mut out, Protocol::Resp3);
        assert_eq!(out, b"%1\r\n$1\r\na\r\n_\r\n_\r\n");
    }

    #[test]
    fn random_bytes_never_panic_or_overrun() {
        // A little xorshift generator: garbage that leans towards the bytes
        // RESP cares about, so the parsers get deep before they fail.
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"*$+-:_%>\r\n0123456789-x ";
        for _ in 0..20_000 {
            let len = (next() % 40) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            // Whatever the verdict, a parse that succeeds consumes some of
            // the input and never more than there is.
            let whole = request(&input);
            if let Ok(Some((_, used))) = whole {
                assert!(used > 0 && used <= input.len(), "{input:?}");
            }
            // And a request fed one byte at a time gets the same verdict.
            let mut parser = RequestParser::default();
            let mut buf = BytesMut::new();
            let mut piecewise = Ok(None);
            for &byte in &input {
                buf.extend_from_slice(&[byte]);
                piecewise = parser.next(&mut buf);
                if piecewise != Ok(None) {
                    break;
                }
            }
            assert_eq!(piecewise, whole, "{input:?}");
            if let Ok(Some((_, used))) = Frame::parse(&input) {
                assert!(used > 0 && used <= input.len(), "{input:?}");
            }
        }
    }

    #[test]
    fn rejects_hostile_replies() {
        let deep = b"*1\r\n".repeat(MAX_DEPTH + 1);
        assert!(Frame::parse(&deep).is_err());
        assert!(Frame::parse(b"?\r\n").is_err());
        assert!(Frame::parse(b":1x\r\n").is_err());
        assert_eq!(Frame::parse(b"*2147483647\r\n"), Ok(None));
    }
}
