//! A session as a reader follows it: the files of one session (the session's own, resumed
//! copies, subagent transcripts) in, one conversation out.
//!
//! - **Order** comes from the `parentUuid` DAG (a compaction boundary hangs from its
//!   `logicalParentUuid`), not from file order: hooks, progress and late tool results are
//!   appended out of order. Siblings and roots go in file order. A uuid seen twice (a resumed
//!   session copies earlier lines) is read once, where it first appears.
//! - **Responses**: the lines of one API response (`message.id`) are merged into one
//!   [`Response`], keeping the usage of its last line.
//! - **Tool results** are joined to their call by `tool_use_id`.
//! - **Subagents** are nested at the Task/Agent call that started them: by the result's
//!   `toolUseResult.agentId` (2.1: `<session>/subagents/agent-<id>.jsonl`), or by the prompt
//!   the subagent was given (2.0: `agent-<id>.jsonl` beside the session; 1.0: inline
//!   `isSidechain` records).
//! - **Kinds**: prompts the user typed, `isMeta` and command records (de-emphasized), the
//!   compaction boundary and its summary, system events, and records that are bookkeeping
//!   (progress, snapshots, queue operations) which a page hides unless asked.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::{parse_record, usage, Usage, MAX_LINE};

/// One file of the session: its name (the store's key) and its bytes.
#[derive(Clone, Copy, Debug)]
pub struct File<'a> {
    pub key: &'a str,
    pub bytes: &'a [u8],
}

/// A conversation: the items in reading order.
#[derive(Clone, Debug, Default)]
pub struct Conversation {
    pub items: Vec<Item>,
}

/// A subagent's conversation and where it came from.
#[derive(Clone, Debug)]
pub struct Subagent {
    /// Its agent id, when known.
    pub agent_id: Option<String>,
    /// The file it was read from.
    pub key: String,
    pub conversation: Conversation,
}

/// A whole session.
#[derive(Clone, Debug, Default)]
pub struct Session {
    pub conversation: Conversation,
    /// Subagent transcripts no call could be found for (e.g. the compaction summariser's).
    pub unlinked: Vec<Subagent>,
    /// Lines that were not JSON objects.
    pub malformed: u64,
}

/// One thing in the conversation, with where it was read.
#[derive(Clone, Debug)]
pub struct Item {
    pub uuid: Option<String>,
    pub timestamp: Option<String>,
    /// The file (index into the files given) and 1-based line.
    pub file: usize,
    pub line: u64,
    pub kind: ItemKind,
}

#[derive(Clone, Debug)]
pub enum ItemKind {
    /// What the user typed (text and pasted images).
    Prompt { text: String, images: Vec<Image> },
    /// `isMeta` records and slash-command records: context Claude Code added, not typing.
    Meta { text: String },
    /// One API response: its lines merged.
    Response(Response),
    /// The compaction boundary, with the summary that follows it when there is one.
    Compaction {
        trigger: Option<String>,
        pre_tokens: Option<u64>,
        summary: Option<String>,
    },
    /// A system event (hook output, local command, API error, ...).
    System { subtype: String, text: String },
    /// A 1.0-era `summary` record: the session's title.
    Summary { text: String },
    /// A tool result whose call is not in this conversation.
    OrphanResult(ToolResult),
    /// Bookkeeping: progress, file-history snapshots, queue operations, and record kinds this
    /// version does not know. Hidden unless the reader asks for every record.
    Hidden { kind: String, text: String },
}

impl ItemKind {
    /// Whether a page shows it only when asked for every record.
    pub fn is_hidden(&self) -> bool {
        matches!(self, ItemKind::Hidden { .. })
    }
}

#[derive(Clone, Debug, Default)]
pub struct Response {
    pub message_id: String,
    pub model: Option<String>,
    /// The usage of its last line.
    pub usage: Option<Usage>,
    pub blocks: Vec<Block>,
}

#[derive(Clone, Debug)]
pub enum Block {
    Text(String),
    Thinking(String),
    RedactedThinking,
    Tool(ToolCall),
    Image(Image),
}

#[derive(Clone, Debug)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub input: Value,
    pub result: Option<ToolResult>,
    /// The subagent its result names (`toolUseResult.agentId`).
    pub agent_id: Option<String>,
    /// The subagent this call started.
    pub subagent: Option<Box<Subagent>>,
}

#[derive(Clone, Debug, Default)]
pub struct ToolResult {
    pub tool_use_id: String,
    pub text: String,
    pub images: Vec<Image>,
    pub is_error: bool,
}

/// A base64 image as the transcript holds it.
#[derive(Clone, Debug)]
pub struct Image {
    pub media_type: String,
    pub data: String,
}

/// What the page reads of one line. Only these fields are kept; everything else (whole-file
/// copies in `toolUseResult`, metadata) is skipped while parsing, never built. A field of an
/// unexpected type reads as absent.
#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct Raw {
    #[serde(rename = "type", deserialize_with = "text")]
    kind: Option<String>,
    #[serde(deserialize_with = "text")]
    uuid: Option<String>,
    #[serde(rename = "parentUuid", deserialize_with = "text")]
    parent_uuid: Option<String>,
    #[serde(rename = "logicalParentUuid", deserialize_with = "text")]
    logical_parent_uuid: Option<String>,
    #[serde(deserialize_with = "text")]
    timestamp: Option<String>,
    #[serde(rename = "agentId", deserialize_with = "text")]
    agent_id: Option<String>,
    #[serde(deserialize_with = "text")]
    subtype: Option<String>,
    #[serde(deserialize_with = "text")]
    content: Option<String>,
    #[serde(deserialize_with = "text")]
    summary: Option<String>,
    #[serde(rename = "isSidechain", deserialize_with = "flag")]
    is_sidechain: bool,
    #[serde(rename = "isMeta", deserialize_with = "flag")]
    is_meta: bool,
    #[serde(rename = "isCompactSummary", deserialize_with = "flag")]
    is_compact_summary: bool,
    message: Option<Value>,
    #[serde(rename = "compactMetadata")]
    compact_metadata: Option<Value>,
    /// `toolUseResult.agentId`: the rest of the tool's structured result is skipped.
    #[serde(rename = "toolUseResult", deserialize_with = "agent_of")]
    result_agent: Option<String>,
}

fn text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    use serde::Deserialize;
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        _ => None,
    })
}

fn flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    use serde::Deserialize;
    Ok(Value::deserialize(d)? == Value::Bool(true))
}

/// The `agentId` of an object; anything else (a string result, an array) has none.
fn agent_of<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct Visit;
    impl<'de> serde::de::Visitor<'de> for Visit {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut found = None;
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if key == "agentId" {
                    if let Value::String(s) = map.next_value::<Value>()? {
                        found = Some(s);
                    }
                } else {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
            Ok(found)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(Visit)
}

/// One line as the page reads it: `Ok(None)` for a blank line, `Err` for one that is not a
/// JSON object (read as leniently as the index reads lines: a byte-order mark and a CRLF
/// ending are fine).
fn parse_raw(bytes: &[u8], line: u64) -> Result<Option<Raw>, crate::LineError> {
    let trimmed = bytes
        .strip_prefix("\u{feff}".as_bytes())
        .unwrap_or(bytes)
        .trim_ascii();
    if trimmed.is_empty() {
        return Ok(None);
    }
    if trimmed.len() <= MAX_LINE && trimmed.first() == Some(&b'{') {
        if let Ok(raw) = serde_json::from_slice::<Raw>(trimmed) {
            return Ok(Some(raw));
        }
    }
    // The exact reading (and its error): e.g. a key given twice, which a typed read refuses.
    let Some(map) = parse_record(bytes, line)? else {
        return Ok(None);
    };
    Ok(Some(
        serde_json::from_value(Value::Object(map)).unwrap_or_default(),
    ))
}

/// One parsed line and where it is.
struct Rec {
    file: usize,
    line: u64,
    raw: Raw,
}

impl Rec {
    fn kind(&self) -> &str {
        self.raw.kind.as_deref().unwrap_or("unknown")
    }
    fn uuid(&self) -> Option<&str> {
        self.raw.uuid.as_deref()
    }
}

/// Reads the files of one session into its conversation. Files are read in the order given
/// (the first copy of a uuid wins); a file whose every record is a sidechain is a subagent's.
pub fn build(files: &[File<'_>]) -> Session {
    let mut session = Session::default();
    let mut seen: HashSet<String> = HashSet::new();
    // Records per file, deduplicated by uuid.
    let mut per_file: Vec<Vec<Rec>> = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let mut recs = Vec::new();
        for (n, raw) in f.bytes.split(|&b| b == b'\n').enumerate() {
            let raw = match parse_raw(raw, n as u64 + 1) {
                Ok(Some(raw)) => raw,
                Ok(None) => continue,
                Err(_) => {
                    session.malformed += 1;
                    continue;
                }
            };
            if let Some(uuid) = &raw.uuid {
                if !seen.insert(uuid.clone()) {
                    continue;
                }
            }
            recs.push(Rec {
                file: i,
                line: n as u64 + 1,
                raw,
            });
        }
        per_file.push(recs);
    }
    // Subagent files: every record a sidechain. Their agent id: a record's `agentId`, else
    // the file name's `agent-<id>.jsonl`.
    let mut main: Vec<Rec> = Vec::new();
    let mut agents: Vec<Subagent> = Vec::new();
    for (i, recs) in per_file.into_iter().enumerate() {
        let is_agent = !recs.is_empty()
            && recs
                .iter()
                .filter(|r| r.uuid().is_some())
                .all(|r| r.raw.is_sidechain);
        if is_agent {
            let agent_id = recs
                .iter()
                .find_map(|r| r.raw.agent_id.clone())
                .or_else(|| agent_id_of_key(files[i].key));
            agents.push(Subagent {
                agent_id,
                key: files[i].key.to_string(),
                conversation: conversation(order(recs)),
            });
        } else {
            main.extend(recs);
        }
    }
    // 1.0: sidechains inline in the main file, one per sidechain root.
    let (side, main): (Vec<Rec>, Vec<Rec>) = main.into_iter().partition(|r| r.raw.is_sidechain);
    for chain in chains(side) {
        let key = files[chain[0].file].key.to_string();
        agents.push(Subagent {
            agent_id: None,
            key,
            conversation: conversation(order(chain)),
        });
    }
    let mut conv = conversation(order(main));
    link_subagents(&mut conv, &mut agents);
    session.conversation = conv;
    session.unlinked = agents;
    session
}

/// `agent-<id>.jsonl` → `<id>`.
fn agent_id_of_key(key: &str) -> Option<String> {
    let name = key.rsplit('/').next()?;
    let id = name.strip_prefix("agent-")?.strip_suffix(".jsonl")?;
    (!id.is_empty()).then(|| id.to_string())
}

/// Splits sidechain records into their conversations: each root (no parent among them) with
/// everything below it.
fn chains(recs: Vec<Rec>) -> Vec<Vec<Rec>> {
    if recs.is_empty() {
        return Vec::new();
    }
    let index: HashMap<String, usize> = recs
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.uuid().map(|u| (u.to_string(), i)))
        .collect();
    // The root of each record, following parents (bounded by the number of records).
    let parent = |i: usize| -> Option<usize> {
        recs[i]
            .raw
            .parent_uuid
            .as_deref()
            .and_then(|p| index.get(p).copied())
            .filter(|&p| p != i)
    };
    let mut root_of = vec![usize::MAX; recs.len()];
    for i in 0..recs.len() {
        let mut path = vec![i];
        let mut at = i;
        let root = loop {
            if root_of[at] != usize::MAX {
                break root_of[at];
            }
            match parent(at) {
                Some(p) if path.len() <= recs.len() => {
                    path.push(p);
                    at = p;
                }
                _ => break at,
            }
        };
        for p in path {
            root_of[p] = root;
        }
    }
    let mut groups: Vec<(usize, Vec<Rec>)> = Vec::new();
    let mut slot: HashMap<usize, usize> = HashMap::new();
    for (i, r) in recs.into_iter().enumerate() {
        let g = *slot.entry(root_of[i]).or_insert_with(|| {
            groups.push((root_of[i], Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push(r);
    }
    groups.into_iter().map(|(_, g)| g).collect()
}

/// Puts records in conversation order: depth first along `parentUuid` (a compaction boundary
/// under its `logicalParentUuid`), children and roots in file order; a record without a uuid
/// follows the record before it in its file.
fn order(recs: Vec<Rec>) -> Vec<Rec> {
    let n = recs.len();
    let index: HashMap<&str, usize> = recs
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.uuid().map(|u| (u, i)))
        .collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut roots: Vec<usize> = Vec::new();
    let mut last_with_uuid: HashMap<usize, usize> = HashMap::new();
    for (i, r) in recs.iter().enumerate() {
        let parent = if r.uuid().is_some() {
            r.raw
                .parent_uuid
                .as_deref()
                .or(r.raw.logical_parent_uuid.as_deref())
                .and_then(|p| index.get(p).copied())
        } else {
            last_with_uuid.get(&r.file).copied()
        };
        match parent {
            Some(p) if p != i => children[p].push(i),
            _ => roots.push(i),
        }
        if r.uuid().is_some() {
            last_with_uuid.insert(r.file, i);
        }
    }
    // Records arrive in file order, so children and roots already are.
    let mut out_order = Vec::with_capacity(n);
    let mut visited = vec![false; n];
    let mut stack: Vec<usize> = roots.into_iter().rev().collect();
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut visited[i], true) {
            continue;
        }
        out_order.push(i);
        stack.extend(children[i].iter().rev().copied());
    }
    // Anything in a cycle (no root reaches it) goes last, in file order.
    out_order.extend((0..n).filter(|&i| !visited[i]));
    let mut slots: Vec<Option<Rec>> = recs.into_iter().map(Some).collect();
    out_order
        .into_iter()
        .filter_map(|i| slots[i].take())
        .collect()
}

/// Where a tool call sits: item and block.
type CallAt = (usize, usize);

/// Turns ordered records into items.
fn conversation(recs: Vec<Rec>) -> Conversation {
    let mut items: Vec<Item> = Vec::new();
    let mut calls: HashMap<String, CallAt> = HashMap::new();
    for mut r in recs {
        let mut message = r.raw.message.take();
        let message = message.as_mut().and_then(Value::as_object_mut);
        let (uuid, timestamp) = (r.raw.uuid.clone(), r.raw.timestamp.clone());
        let item = |kind: ItemKind| Item {
            uuid: uuid.clone(),
            timestamp: timestamp.clone(),
            file: r.file,
            line: r.line,
            kind,
        };
        match r.kind() {
            "assistant" => {
                let Some(msg) = message else { continue };
                let id = msg
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let blocks = assistant_blocks(msg.get_mut("content"));
                let merge = !id.is_empty()
                    && matches!(items.last(), Some(Item { kind: ItemKind::Response(resp), .. }) if resp.message_id == id);
                if !merge {
                    items.push(item(ItemKind::Response(Response {
                        message_id: id,
                        ..Response::default()
                    })));
                }
                let at = items.len() - 1;
                let ItemKind::Response(resp) = &mut items[at].kind else {
                    unreachable!("just pushed or matched a response")
                };
                if let Some(model) = msg.get("model").and_then(Value::as_str) {
                    resp.model = Some(model.to_string());
                }
                if let Some(u) = msg.get("usage").and_then(usage) {
                    resp.usage = Some(u);
                }
                for b in blocks {
                    if let Block::Tool(call) = &b {
                        calls.insert(call.id.clone(), (at, resp.blocks.len()));
                    }
                    resp.blocks.push(b);
                }
            }
            "user" => {
                let content = message.and_then(|m| m.get_mut("content"));
                if r.raw.is_compact_summary {
                    let text = plain_text(content);
                    match items.last_mut() {
                        Some(Item {
                            kind: ItemKind::Compaction { summary, .. },
                            ..
                        }) if summary.is_none() => *summary = Some(text),
                        _ => items.push(item(ItemKind::Meta { text })),
                    }
                    continue;
                }
                let agent_id = r.raw.result_agent.as_deref();
                let (text, images, results) = user_parts(content);
                for mut res in results {
                    match calls.get(&res.tool_use_id).copied() {
                        Some((i, b)) => {
                            if let ItemKind::Response(resp) = &mut items[i].kind {
                                if let Some(Block::Tool(call)) = resp.blocks.get_mut(b) {
                                    if let Some(agent) = agent_id {
                                        call.agent_id = Some(agent.to_string());
                                    }
                                    match &mut call.result {
                                        Some(prev) => {
                                            prev.text.push_str("\n\n");
                                            prev.text.push_str(&res.text);
                                            prev.images.append(&mut res.images);
                                            prev.is_error |= res.is_error;
                                        }
                                        None => call.result = Some(res),
                                    }
                                }
                            }
                        }
                        None => items.push(item(ItemKind::OrphanResult(res))),
                    }
                }
                if text.trim().is_empty() && images.is_empty() {
                    continue;
                }
                if r.raw.is_meta || is_command(&text) {
                    items.push(item(ItemKind::Meta { text }));
                } else {
                    items.push(item(ItemKind::Prompt { text, images }));
                }
            }
            "system" => {
                let subtype = r.raw.subtype.clone().unwrap_or_default();
                if subtype == "compact_boundary" {
                    let meta = r.raw.compact_metadata.as_ref();
                    items.push(item(ItemKind::Compaction {
                        trigger: meta
                            .and_then(|m| m.get("trigger"))
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        pre_tokens: meta
                            .and_then(|m| m.get("preTokens"))
                            .and_then(Value::as_u64),
                        summary: None,
                    }));
                } else if matches!(subtype.as_str(), "turn_duration" | "stop_hook_summary") {
                    items.push(item(ItemKind::Hidden {
                        kind: format!("system/{subtype}"),
                        text: String::new(),
                    }));
                } else {
                    let text = r.raw.content.clone().unwrap_or_default();
                    items.push(item(ItemKind::System { subtype, text }));
                }
            }
            "summary" => {
                let text = r.raw.summary.clone().unwrap_or_default();
                items.push(item(ItemKind::Summary { text }));
            }
            other => {
                let kind = other.to_string();
                items.push(item(ItemKind::Hidden {
                    kind,
                    text: String::new(),
                }));
            }
        }
    }
    Conversation { items }
}

/// Slash-command and shell-escape records: what Claude Code wrote around a command.
fn is_command(text: &str) -> bool {
    let t = text.trim_start();
    [
        "<command-name>",
        "<command-message>",
        "<command-args>",
        "<local-command-stdout>",
        "<local-command-stderr>",
        "<local-command-caveat>",
        "<bash-input>",
        "<bash-stdout>",
        "<bash-stderr>",
        "Caveat: The messages below were generated by the user while running local commands",
    ]
    .iter()
    .any(|p| t.starts_with(p))
}

/// The string at `field` of `v`, moved out (the record is read once).
fn take_str(v: &mut Value, field: &str) -> Option<String> {
    match v.get_mut(field) {
        Some(Value::String(s)) => Some(std::mem::take(s)),
        _ => None,
    }
}

fn image(block: &mut Value) -> Option<Image> {
    let source = block.get_mut("source")?;
    let data = take_str(source, "data")?;
    Some(Image {
        media_type: take_str(source, "media_type").unwrap_or_else(|| "image/png".into()),
        data,
    })
}

fn assistant_blocks(content: Option<&mut Value>) -> Vec<Block> {
    match content {
        Some(Value::String(s)) => vec![Block::Text(std::mem::take(s))],
        Some(Value::Array(blocks)) => blocks
            .iter_mut()
            .filter_map(|b| {
                let kind = b.get("type").and_then(Value::as_str)?.to_string();
                let mut s = |f: &str| take_str(b, f).unwrap_or_default();
                match kind.as_str() {
                    "text" => Some(Block::Text(s("text"))),
                    "thinking" => Some(Block::Thinking(s("thinking"))),
                    "redacted_thinking" => Some(Block::RedactedThinking),
                    "tool_use" | "server_tool_use" => {
                        let (id, name) = (s("id"), s("name"));
                        Some(Block::Tool(ToolCall {
                            id,
                            name,
                            input: b.get_mut("input").map(Value::take).unwrap_or(Value::Null),
                            result: None,
                            agent_id: None,
                            subagent: None,
                        }))
                    }
                    "image" => image(b).map(Block::Image),
                    _ => None,
                }
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// A user line's typed text, pasted images and tool results.
fn user_parts(content: Option<&mut Value>) -> (String, Vec<Image>, Vec<ToolResult>) {
    let mut text = Vec::new();
    let mut images = Vec::new();
    let mut results = Vec::new();
    match content {
        Some(Value::String(s)) => text.push(std::mem::take(s)),
        Some(Value::Array(blocks)) => {
            for b in blocks {
                let kind = b.get("type").and_then(Value::as_str).map(str::to_string);
                match kind.as_deref() {
                    Some("text") => text.extend(take_str(b, "text")),
                    Some("image") => images.extend(image(b)),
                    Some("tool_result") => {
                        let mut r = ToolResult {
                            tool_use_id: take_str(b, "tool_use_id").unwrap_or_default(),
                            is_error: b.get("is_error").and_then(Value::as_bool) == Some(true),
                            ..ToolResult::default()
                        };
                        match b.get_mut("content") {
                            Some(Value::String(s)) => r.text = std::mem::take(s),
                            Some(Value::Array(parts)) => {
                                let mut t = Vec::new();
                                for p in parts {
                                    let kind =
                                        p.get("type").and_then(Value::as_str).map(str::to_string);
                                    match kind.as_deref() {
                                        Some("text") => t.extend(take_str(p, "text")),
                                        Some("image") => r.images.extend(image(p)),
                                        Some("tool_reference") => t.extend(
                                            p.get("tool_name")
                                                .and_then(Value::as_str)
                                                .map(|n| format!("[tool {n}]")),
                                        ),
                                        _ => {}
                                    }
                                }
                                r.text = t.join("\n");
                            }
                            _ => {}
                        }
                        results.push(r);
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
    (text.join("\n\n"), images, results)
}

fn plain_text(content: Option<&mut Value>) -> String {
    user_parts(content).0
}

/// The prompt a subagent conversation starts with: its first prompt's text.
fn first_prompt(c: &Conversation) -> Option<&str> {
    c.items.iter().find_map(|i| match &i.kind {
        ItemKind::Prompt { text, .. } | ItemKind::Meta { text } => Some(text.as_str()),
        _ => None,
    })
}

/// Nests each subagent at the call that started it; what is left stays in `agents`.
fn link_subagents(conv: &mut Conversation, agents: &mut Vec<Subagent>) {
    for item in &mut conv.items {
        let ItemKind::Response(resp) = &mut item.kind else {
            continue;
        };
        for block in &mut resp.blocks {
            let Block::Tool(call) = block else { continue };
            let agent_id = call.agent_id.clone();
            if !matches!(call.name.as_str(), "Task" | "Agent") {
                continue;
            }
            let prompt = call.input.get("prompt").and_then(Value::as_str);
            let found = agents
                .iter()
                .position(|a| agent_id.is_some() && a.agent_id == agent_id)
                .or_else(|| {
                    let prompt = prompt?.trim();
                    agents.iter().position(|a| {
                        first_prompt(&a.conversation).is_some_and(|p| p.trim() == prompt)
                    })
                });
            if let Some(i) = found {
                let mut sub = agents.remove(i);
                // A subagent's own Task calls (rare) nest in turn.
                link_subagents(&mut sub.conversation, agents);
                call.subagent = Some(Box::new(sub));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(c: &Conversation) -> Vec<String> {
        c.items
            .iter()
            .map(|i| match &i.kind {
                ItemKind::Prompt { text, .. } => format!("prompt:{text}"),
                ItemKind::Meta { .. } => "meta".into(),
                ItemKind::Response(r) => format!(
                    "response:{}",
                    r.blocks
                        .iter()
                        .map(|b| match b {
                            Block::Text(t) => t.clone(),
                            Block::Tool(c) => format!(
                                "{}={}{}",
                                c.name,
                                c.result.as_ref().map_or("?", |r| r.text.as_str()),
                                c.subagent.as_ref().map_or(String::new(), |s| format!(
                                    "[{}]",
                                    kinds(&s.conversation).join(",")
                                ))
                            ),
                            _ => "?".into(),
                        })
                        .collect::<Vec<_>>()
                        .join("+")
                ),
                ItemKind::Compaction { summary, .. } => {
                    format!("compaction:{}", summary.as_deref().unwrap_or(""))
                }
                ItemKind::System { subtype, .. } => format!("system:{subtype}"),
                ItemKind::Summary { text } => format!("summary:{text}"),
                ItemKind::OrphanResult(r) => format!("orphan:{}", r.text),
                ItemKind::Hidden { kind, .. } => format!("hidden:{kind}"),
            })
            .collect()
    }

    #[test]
    fn order_follows_parents_and_a_response_is_one_item_with_its_results() {
        // The tool result and a hook's progress are written late, after the next prompt's
        // lines; the parent links put them back.
        let text = [
            r#"{"type":"user","uuid":"u1","parentUuid":null,"message":{"role":"user","content":"list files"}}"#,
            r#"{"type":"assistant","uuid":"a1","parentUuid":"u1","message":{"id":"m1","model":"claude-x","content":[{"type":"text","text":"Looking."}],"usage":{"output_tokens":1}}}"#,
            r#"{"type":"assistant","uuid":"a2","parentUuid":"a1","message":{"id":"m1","model":"claude-x","content":[{"type":"tool_use","id":"t1","name":"Bash","input":{"command":"ls"}}],"usage":{"output_tokens":9}}}"#,
            r#"{"type":"user","uuid":"u3","parentUuid":"r1","message":{"role":"user","content":"thanks"}}"#,
            r#"{"type":"progress","uuid":"p1","parentUuid":"a2","data":{"type":"hook_progress"}}"#,
            r#"{"type":"user","uuid":"r1","parentUuid":"p1","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"a.txt"}]}}"#,
        ]
        .join("\n");
        let s = build(&[File {
            key: "k/s.jsonl",
            bytes: text.as_bytes(),
        }]);
        assert_eq!(
            kinds(&s.conversation),
            [
                "prompt:list files",
                "response:Looking.+Bash=a.txt",
                "hidden:progress",
                "prompt:thanks"
            ]
        );
        let ItemKind::Response(r) = &s.conversation.items[1].kind else {
            panic!()
        };
        assert_eq!(r.usage.unwrap()[1], Some(9), "the last line's usage");
    }

    #[test]
    fn compaction_meta_and_subagents_of_each_layout() {
        let main = [
            r#"{"type":"user","uuid":"u1","parentUuid":null,"message":{"role":"user","content":"go"}}"#,
            r#"{"type":"user","uuid":"m1","parentUuid":"u1","isMeta":true,"message":{"role":"user","content":"skill text"}}"#,
            r#"{"type":"assistant","uuid":"a1","parentUuid":"m1","message":{"id":"x1","content":[{"type":"tool_use","id":"t1","name":"Task","input":{"description":"d","prompt":"find the bug"}}]}}"#,
            r#"{"type":"user","uuid":"r1","parentUuid":"a1","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"found"}]},"toolUseResult":{"agentId":"abc"}}"#,
            r#"{"type":"assistant","uuid":"a2","parentUuid":"r1","message":{"id":"x2","content":[{"type":"tool_use","id":"t2","name":"Task","input":{"prompt":"old style"}}]}}"#,
            r#"{"type":"user","uuid":"r2","parentUuid":"a2","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"t2","content":"done"}]}}"#,
            r#"{"type":"user","uuid":"s1","parentUuid":null,"isSidechain":true,"message":{"role":"user","content":"old style"}}"#,
            r#"{"type":"assistant","uuid":"s2","parentUuid":"s1","isSidechain":true,"message":{"id":"y","content":[{"type":"text","text":"inline agent"}]}}"#,
            r#"{"type":"system","subtype":"compact_boundary","uuid":"c1","parentUuid":null,"logicalParentUuid":"r2","compactMetadata":{"trigger":"auto","preTokens":5}}"#,
            r#"{"type":"user","uuid":"c2","parentUuid":"c1","isCompactSummary":true,"message":{"role":"user","content":"This session is being continued"}}"#,
            r#"{"type":"user","uuid":"u9","parentUuid":"c2","message":{"role":"user","content":"<command-name>/model</command-name>"}}"#,
        ]
        .join("\n");
        let agent = [
            r#"{"type":"user","uuid":"g1","parentUuid":null,"isSidechain":true,"agentId":"abc","message":{"role":"user","content":"find the bug"}}"#,
            r#"{"type":"assistant","uuid":"g2","parentUuid":"g1","isSidechain":true,"agentId":"abc","message":{"id":"z","content":[{"type":"text","text":"bug found"}]}}"#,
        ]
        .join("\n");
        let s = build(&[
            File {
                key: "k/s.jsonl",
                bytes: main.as_bytes(),
            },
            File {
                key: "k/s/subagents/agent-abc.jsonl",
                bytes: agent.as_bytes(),
            },
        ]);
        assert_eq!(
            kinds(&s.conversation),
            [
                "prompt:go",
                "meta",
                "response:Task=found[prompt:find the bug,response:bug found]",
                "response:Task=done[prompt:old style,response:inline agent]",
                "compaction:This session is being continued",
                "meta"
            ]
        );
        assert!(s.unlinked.is_empty());
    }
}
