//! The tantivy schema and its tokenizers.
//!
//! Two kinds of documents live in one index: messages (`doc = "msg"`), and one progress record
//! per stored file (`doc = "progress"`, keyed by `pkey`), which says how far that file's versions
//! have been indexed. Both are committed together, so a crash never leaves them disagreeing.

use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, FAST, STORED,
    STRING,
};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, TextAnalyzer, Token,
    TokenStream, Tokenizer,
};
use tantivy::Index;

/// Bumped whenever the schema or the tokenizers change; an index of another version is rebuilt.
pub const SCHEMA_VERSION: u32 = 1;

pub(crate) const EN: &str = "hoover_en";
pub(crate) const CODE: &str = "hoover_code";
pub(crate) const LOWER: &str = "hoover_lower";
pub(crate) const PATH: &str = "hoover_path";

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
    pub msgid: Field,
    pub session_h: Field,
    pub project_h: Field,
    pub usage: [Field; 4],
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
        key: b.add_text_field("key", STRING | STORED),
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
        offset: b.add_u64_field("offset", STORED),
        text: b.add_text_field(
            "text",
            text_opts(EN, IndexRecordOption::WithFreqsAndPositions).set_stored(),
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
            b.add_u64_field("usage_cache_write", fast_u64),
        ],
        pkey: b.add_text_field("pkey", STRING),
        progress: b.add_text_field("progress", STORED),
    };
    (b.build(), fields)
}

pub(crate) fn register_tokenizers(index: &Index) {
    let t = index.tokenizers();
    t.register(
        EN,
        TextAnalyzer::builder(SimpleTokenizer::default())
            .filter(RemoveLongFilter::limit(48))
            .filter(LowerCaser)
            .filter(Stemmer::new(Language::English))
            .build(),
    );
    t.register(CODE, TextAnalyzer::builder(CodeTokenizer).build());
    t.register(
        LOWER,
        TextAnalyzer::builder(tantivy::tokenizer::RawTokenizer::default())
            .filter(LowerCaser)
            .build(),
    );
    t.register(PATH, TextAnalyzer::builder(PathTokenizer).build());
}

/// Characters that join words into one code token: `snake_case`, `a.b.c`, `src/main.rs`,
/// `--all-targets`, `std::io`, `user@host`.
fn is_code_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '/' | '-' | ':' | '@' | '#' | '~' | '$' | '+')
}

fn is_joiner(c: char) -> bool {
    is_code_char(c) && !c.is_alphanumeric()
}

/// The code tokenizer: whole identifiers, paths, flags and error codes, lowercased, and only
/// those that hold a joining character (plain words are already in the English field).
#[derive(Clone, Copy, Default)]
pub(crate) struct CodeTokenizer;

/// Splits `text` into code tokens as `(byte start, token)`.
pub(crate) fn code_tokens(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut start = None;
    let mut push = |from: usize, to: usize| {
        let raw = &text[from..to];
        let trimmed_start = raw.len() - raw.trim_start_matches(is_joiner).len();
        let word = raw.trim_matches(is_joiner);
        if word.len() < 3 || word.len() > 120 || !word.contains(is_joiner) {
            return;
        }
        out.push((from + trimmed_start, word.to_lowercase()));
    };
    for (i, c) in text.char_indices() {
        match (is_code_char(c), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                push(s, i);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
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

fn to_tokens(items: impl Iterator<Item = (usize, String)>) -> Vec<Token> {
    items
        .enumerate()
        .map(|(position, (from, text))| Token {
            offset_from: from,
            offset_to: from + text.len(),
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

pub(crate) fn path_components(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut offset = 0;
    for part in text.split(['/', '\\']) {
        if !part.is_empty() {
            out.push((offset, part.to_lowercase()));
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
    fn code_tokens_keep_identifiers_paths_and_flags_whole() {
        let words: Vec<String> = code_tokens(
            "call parse_snake_case() in src/main.rs, see E0432 and --all-targets; std::io::Error.",
        )
        .into_iter()
        .map(|(_, w)| w)
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
            .map(|(_, p)| p)
            .collect();
        assert_eq!(parts, vec!["home", "me", "src", "hoover"]);
    }
}
