//! The tantivy schema and its tokenizers.
//!
//! Two kinds of documents live in one index: messages (`doc = "msg"`), and one progress record
//! per stored file (`doc = "progress"`, keyed by `pkey`), which says how far that file's versions
//! have been indexed. Both are committed together, so a crash never leaves them disagreeing.

use rustc_hash::FxHashMap;
use std::cell::RefCell;
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, FAST, STORED,
    STRING,
};

use tantivy::tokenizer::{LowerCaser, TextAnalyzer, Token, TokenStream, Tokenizer};
use tantivy::Index;

/// Bumped whenever the schema or the tokenizers change; an index of another version is rebuilt.
pub const SCHEMA_VERSION: u32 = 3;

pub(crate) const EN: &str = "hoover_en";
pub(crate) const CODE: &str = "hoover_code";
pub(crate) const LOWER: &str = "hoover_lower";
pub(crate) const PATH: &str = "hoover_path";

/// `flags`: the record is a message (a `user` or `assistant` record with a `uuid`).
pub(crate) const FLAG_MESSAGE: u64 = 1;

/// Every field, by name.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fields {
    pub doc: Field,
    pub key: Field,
    pub session: Field,
    pub uuid: Field,
    pub parent: Field,
    pub role: Field,
    pub kind: Field,
    pub tool: Field,
    pub project: Field,
    pub branch: Field,
    pub model: Field,
    pub ts: Field,
    pub seq: Field,
    pub line: Field,
    pub offset: Field,
    pub text: Field,
    pub code: Field,
    pub uid: Field,
    /// The API response a message line belongs to ([`hoover_transcript::tally::response_id`]).
    pub msgid: Field,
    pub session_h: Field,
    pub project_h: Field,
    /// The line's token counts, each stored plus one (0: the line has no such count).
    pub usage: [Field; 4],
    /// The record's `type` as written (`user`, `progress`, ...), for `kind:` and for leaving
    /// progress, snapshots and queue operations out of searches.
    pub rtype: Field,
    /// What the counters need, on messages and on the copies of messages seen again
    /// (`doc = "copy"`, nothing else indexed), so the counts rebuild from the index alone:
    /// [`FLAG_MESSAGE`], the own timestamp, its day, the tool calls (`HASH NAME`).
    pub flags: Field,
    pub own_ts: Field,
    pub day: Field,
    pub calls: Field,
    pub pkey: Field,
    pub progress: Field,
}

pub(crate) fn build() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text_opts = |tokenizer: &str, record: IndexRecordOption| {
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(tokenizer)
                .set_index_option(record),
        )
    };
    let fast_u64 = NumericOptions::default().set_fast();
    let fields = Fields {
        doc: b.add_text_field("doc", STRING),
        key: b.add_text_field("key", STRING | STORED | FAST),
        session: b.add_text_field("session", STRING | STORED),
        uuid: b.add_text_field("uuid", STRING | STORED),
        parent: b.add_text_field("parent", STORED),
        role: b.add_text_field(
            "role",
            text_opts(LOWER, IndexRecordOption::Basic).set_stored(),
        ),
        kind: b.add_text_field("kind", STORED),
        tool: b.add_text_field(
            "tool",
            text_opts(LOWER, IndexRecordOption::Basic).set_stored(),
        ),
        project: b.add_text_field(
            "project",
            text_opts(PATH, IndexRecordOption::Basic).set_stored(),
        ),
        branch: b.add_text_field("branch", STORED),
        model: b.add_text_field("model", STRING | STORED | FAST),
        ts: b.add_i64_field(
            "ts",
            NumericOptions::default()
                .set_indexed()
                .set_fast()
                .set_stored(),
        ),
        seq: b.add_u64_field("seq", STORED),
        line: b.add_u64_field("line", STORED),
        offset: b.add_u64_field("offset", STORED | FAST),
        text: b.add_text_field(
            "text",
            text_opts(EN, IndexRecordOption::WithFreqs).set_stored(),
        ),
        code: b.add_text_field("code", text_opts(CODE, IndexRecordOption::WithFreqs)),
        uid: b.add_u64_field("uid", fast_u64.clone()),
        msgid: b.add_u64_field("msgid", fast_u64.clone()),
        session_h: b.add_u64_field("session_h", fast_u64.clone()),
        project_h: b.add_u64_field("project_h", fast_u64.clone()),
        usage: [
            b.add_u64_field("usage_input", fast_u64.clone()),
            b.add_u64_field("usage_output", fast_u64.clone()),
            b.add_u64_field("usage_cache_read", fast_u64.clone()),
            b.add_u64_field("usage_cache_write", fast_u64.clone()),
        ],
        rtype: b.add_text_field("rtype", STRING),
        flags: b.add_u64_field("flags", fast_u64),
        own_ts: b.add_i64_field("own_ts", NumericOptions::default().set_fast()),
        day: b.add_text_field("day", STRING | FAST),
        calls: b.add_text_field("calls", STRING | FAST),
        pkey: b.add_text_field("pkey", STRING),
        progress: b.add_text_field("progress", STORED),
    };
    (b.build(), fields)
}

pub(crate) fn register_tokenizers(index: &Index) {
    let t = index.tokenizers();
    t.register(EN, TextAnalyzer::builder(EnglishTokenizer).build());
    t.register(CODE, TextAnalyzer::builder(CodeTokenizer).build());
    t.register(
        LOWER,
        TextAnalyzer::builder(tantivy::tokenizer::RawTokenizer::default())
            .filter(LowerCaser)
            .build(),
    );
    t.register(PATH, TextAnalyzer::builder(PathTokenizer).build());
}

/// Words longer than this are not indexed in the English field (hashes, base64 runs).
const MAX_WORD: usize = 48;
/// Stems remembered per thread: stemming is the costliest step of indexing, and chat
/// vocabulary repeats.
const STEM_CACHE: usize = 200_000;

thread_local! {
    static STEMS: RefCell<(rust_stemmers::Stemmer, FxHashMap<String, String>)> = RefCell::new((
        rust_stemmers::Stemmer::create(rust_stemmers::Algorithm::English),
        FxHashMap::default(),
    ));
}

/// Lowercases `word` into `lower` and appends its stem to `out`, through the thread's cache.
fn stem_into(word: &str, lower: &mut String, out: &mut String) {
    lower.clear();
    if word.is_ascii() {
        lower.push_str(word);
        lower.make_ascii_lowercase();
    } else {
        lower.extend(word.chars().flat_map(char::to_lowercase));
    }
    STEMS.with(|cell| {
        let (stemmer, cache) = &mut *cell.borrow_mut();
        match cache.get(lower.as_str()) {
            Some(stem) => out.push_str(stem),
            None => {
                let stem = stemmer.stem(lower).into_owned();
                out.push_str(&stem);
                if cache.len() >= STEM_CACHE {
                    cache.clear();
                }
                cache.insert(lower.clone(), stem);
            }
        }
    });
}

/// The next run of letters and digits at or after `*at`, as a byte range; advances `*at`.
fn next_word(text: &str, at: &mut usize) -> Option<(usize, usize)> {
    let rest = &text[*at..];
    let start = *at + rest.find(char::is_alphanumeric)?;
    let end = text[start..]
        .find(|c: char| !c.is_alphanumeric())
        .map(|i| start + i)
        .unwrap_or(text.len());
    *at = end;
    Some((start, end))
}

/// The English field's tokens, streamed with reused buffers: runs of letters and digits,
/// lowercased and stemmed (Snowball English, as tantivy's `en_stem`), words over [`MAX_WORD`]
/// bytes left out; after each word but the first, the pair of it and the word before, as one
/// term joined by a space (`"error handl"`). Pairs make a two-word phrase one term lookup,
/// without storing positions; a word never holds a space, so the two kinds never collide.
pub(crate) struct EnglishStream<'a> {
    text: &'a str,
    at: usize,
    /// Emit word pairs as well as words (indexing); queries ask for words only.
    pairs: bool,
    token: Token,
    lower: String,
    current: String,
    previous: String,
    previous_from: Option<usize>,
    last_word_from: Option<usize>,
    pair_due: bool,
    position: usize,
}

impl<'a> EnglishStream<'a> {
    pub(crate) fn new(text: &'a str, pairs: bool) -> Self {
        EnglishStream {
            text,
            at: 0,
            pairs,
            token: Token::default(),
            lower: String::new(),
            current: String::new(),
            previous: String::new(),
            previous_from: None,
            last_word_from: None,
            pair_due: false,
            position: 0,
        }
    }
}

impl TokenStream for EnglishStream<'_> {
    fn advance(&mut self) -> bool {
        if self.pair_due {
            self.pair_due = false;
            self.token.text.clear();
            self.token.text.push_str(&self.previous);
            self.token.text.push(' ');
            self.token.text.push_str(&self.current);
            self.token.offset_from = self.previous_from.unwrap_or(self.token.offset_from);
            return true;
        }
        loop {
            let Some((from, to)) = next_word(self.text, &mut self.at) else {
                return false;
            };
            if to - from > MAX_WORD {
                continue;
            }
            std::mem::swap(&mut self.previous, &mut self.current);
            self.current.clear();
            stem_into(&self.text[from..to], &mut self.lower, &mut self.current);
            self.token.text.clear();
            self.token.text.push_str(&self.current);
            let previous_from = self.last_word_from.replace(from);
            self.token.offset_from = from;
            self.token.offset_to = to;
            self.token.position = self.position;
            self.position += 1;
            if self.pairs && previous_from.is_some() {
                self.previous_from = previous_from;
                self.pair_due = true;
            }
            return true;
        }
    }
    fn token(&self) -> &Token {
        &self.token
    }
    fn token_mut(&mut self) -> &mut Token {
        &mut self.token
    }
}

/// The English terms of `text`, as `(start, end, stem)`.
pub(crate) fn english_tokens(text: &str) -> Vec<(usize, usize, String)> {
    let mut stream = EnglishStream::new(text, false);
    let mut out = Vec::new();
    while stream.advance() {
        let t = stream.token();
        out.push((t.offset_from, t.offset_to, t.text.clone()));
    }
    out
}

#[derive(Clone, Copy, Default)]
pub(crate) struct EnglishTokenizer;

impl Tokenizer for EnglishTokenizer {
    type TokenStream<'a> = EnglishStream<'a>;
    fn token_stream<'a>(&'a mut self, text: &'a str) -> EnglishStream<'a> {
        EnglishStream::new(text, true)
    }
}

/// Adjacent English terms joined by a space, as the index holds them.
pub(crate) fn pair_terms(terms: &[String]) -> Vec<String> {
    terms
        .windows(2)
        .map(|w| format!("{} {}", w[0], w[1]))
        .collect()
}

/// Characters that join words into one code token: `snake_case`, `a.b.c`, `src/main.rs`,
/// `--all-targets`, `std::io`, `user@host`.
fn is_code_char(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric()
            || matches!(c, '_' | '.' | '/' | '-' | ':' | '@' | '#' | '~' | '$' | '+')
    } else {
        c.is_alphanumeric()
    }
}

fn is_joiner(c: char) -> bool {
    is_code_char(c) && !c.is_alphanumeric()
}

/// The code tokenizer: whole identifiers, paths, flags and error codes, lowercased, and only
/// those that hold a joining character (plain words are already in the English field).
#[derive(Clone, Copy, Default)]
pub(crate) struct CodeTokenizer;

/// Splits `text` into code tokens as `(byte start, token)`.
pub(crate) fn code_tokens(text: &str) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    let mut start = None;
    let mut push = |from: usize, to: usize| {
        let raw = &text[from..to];
        let trimmed_start = raw.len() - raw.trim_start_matches(is_joiner).len();
        let word = raw.trim_matches(is_joiner);
        if word.len() < 3 || word.len() > 120 || !word.contains(is_joiner) {
            return;
        }
        let start = from + trimmed_start;
        out.push((start, start + word.len(), word.to_lowercase()));
    };
    // Most runs are plain words: only runs holding a joiner are looked at again.
    let mut joined = false;
    for (i, c) in text.char_indices() {
        let code = is_code_char(c);
        match (code, start) {
            (true, None) => {
                start = Some(i);
                joined = !c.is_alphanumeric();
            }
            (true, Some(_)) => joined |= !c.is_alphanumeric(),
            (false, Some(s)) => {
                if joined {
                    push(s, i);
                }
                start = None;
            }
            (false, None) => {}
        }
    }
    if let (Some(s), true) = (start, joined) {
        push(s, text.len());
    }
    out
}

/// Tokens computed up front; the streams are short-lived and small.
pub(crate) struct VecTokenStream {
    tokens: Vec<Token>,
    next: usize,
}

impl VecTokenStream {
    fn new(tokens: Vec<Token>) -> Self {
        VecTokenStream { tokens, next: 0 }
    }
}

impl TokenStream for VecTokenStream {
    fn advance(&mut self) -> bool {
        self.next += 1;
        self.next <= self.tokens.len()
    }
    fn token(&self) -> &Token {
        &self.tokens[self.next - 1]
    }
    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.next - 1]
    }
}

/// Tokens from `(start, end, term)`: the offsets are the source word's, so snippets highlight
/// whole words even when the term is a stem.
fn to_tokens(items: impl Iterator<Item = (usize, usize, String)>) -> Vec<Token> {
    items
        .enumerate()
        .map(|(position, (from, to, text))| Token {
            offset_from: from,
            offset_to: to,
            position,
            text,
            position_length: 1,
        })
        .collect()
}

impl Tokenizer for CodeTokenizer {
    type TokenStream<'a> = VecTokenStream;
    fn token_stream<'a>(&'a mut self, text: &'a str) -> VecTokenStream {
        VecTokenStream::new(to_tokens(code_tokens(text).into_iter()))
    }
}

/// Path components, lowercased: `project:hoover` finds `/home/me/src/hoover`.
#[derive(Clone, Copy, Default)]
pub(crate) struct PathTokenizer;

pub(crate) fn path_components(text: &str) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    let mut offset = 0;
    for part in text.split(['/', '\\']) {
        if !part.is_empty() {
            out.push((offset, offset + part.len(), part.to_lowercase()));
        }
        offset += part.len() + 1;
    }
    out
}

impl Tokenizer for PathTokenizer {
    type TokenStream<'a> = VecTokenStream;
    fn token_stream<'a>(&'a mut self, text: &'a str) -> VecTokenStream {
        VecTokenStream::new(to_tokens(path_components(text).into_iter()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexing_emits_words_then_pairs() {
        let mut stream = EnglishStream::new("Running tests, quickly", true);
        let mut tokens = Vec::new();
        while stream.advance() {
            let t = stream.token();
            tokens.push((
                t.text.clone(),
                t.position,
                &"Running tests, quickly"[t.offset_from..t.offset_to],
            ));
        }
        assert_eq!(
            tokens,
            vec![
                ("run".to_string(), 0, "Running"),
                ("test".to_string(), 1, "tests"),
                ("run test".to_string(), 1, "Running tests"),
                ("quick".to_string(), 2, "quickly"),
                ("test quick".to_string(), 2, "tests, quickly"),
            ]
        );
    }

    #[test]
    fn english_tokens_are_lowercased_stems() {
        let words: Vec<String> = english_tokens("Running tests, the Panics were HANDLED")
            .into_iter()
            .map(|(_, _, w)| w)
            .collect();
        assert_eq!(words, vec!["run", "test", "the", "panic", "were", "handl"]);
    }

    #[test]
    fn code_tokens_keep_identifiers_paths_and_flags_whole() {
        let words: Vec<String> = code_tokens(
            "call parse_snake_case() in src/main.rs, see E0432 and --all-targets; std::io::Error.",
        )
        .into_iter()
        .map(|(_, _, w)| w)
        .collect();
        assert_eq!(
            words,
            vec![
                "parse_snake_case",
                "src/main.rs",
                "--all-targets".trim_matches('-'),
                "std::io::error"
            ]
        );
    }

    #[test]
    fn path_components_are_lowercased() {
        let parts: Vec<String> = path_components("/home/Me/src/Hoover")
            .into_iter()
            .map(|(_, _, p)| p)
            .collect();
        assert_eq!(parts, vec!["home", "me", "src", "hoover"]);
    }
}
