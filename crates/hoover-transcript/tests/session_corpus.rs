//! The session model over the real sessions of the shared corpus, in their real directory
//! layout (rebuilt from the flattened names): every result paired with its call, every parent
//! before its child, subagents nested at their calls in the 1.0, 2.0 and 2.1 layouts, pasted
//! images kept.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use hoover_transcript::session::{build, Block, Conversation, File, ItemKind, Session};

/// The corpus as `(real path, bytes)`: `<owner>__<repo>__<path with / as ~>` turned back.
fn tree() -> BTreeMap<String, Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/files");
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(&dir).expect("../shared/corpus beside the project") {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".jsonl") {
            continue;
        }
        let mut parts = name.splitn(3, "__");
        let (owner, repo, rest) = (parts.next().unwrap(), parts.next(), parts.next());
        let path = match (repo, rest) {
            (Some(repo), Some(rest)) => format!("{owner}/{repo}/{}", rest.replace('~', "/")),
            _ => name.clone(),
        };
        out.insert(path, std::fs::read(&p).unwrap());
    }
    out
}

fn is_uuid_name(name: &str) -> bool {
    let stem = name.trim_end_matches(".jsonl");
    stem.len() == 36 && stem.chars().filter(|&c| c == '-').count() == 4
}

fn session_id_of(bytes: &[u8]) -> Option<String> {
    bytes.split(|&b| b == b'\n').find_map(|l| {
        let v: serde_json::Value = serde_json::from_slice(l).ok()?;
        v.get("sessionId")?.as_str().map(str::to_string)
    })
}

/// Each session's files: `<dir>/<id>.jsonl`, `<dir>/<id>/subagents/*.jsonl`, and the
/// `<dir>/agent-*.jsonl` files carrying its id.
fn sessions(tree: &BTreeMap<String, Vec<u8>>) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for path in tree.keys() {
        let (dir, name) = path.rsplit_once('/').unwrap();
        if !is_uuid_name(name) {
            continue;
        }
        let id = name.trim_end_matches(".jsonl");
        let mut files = vec![path.clone()];
        let sub = format!("{dir}/{id}/subagents/");
        for (other, bytes) in tree {
            let beside = other
                .rsplit_once('/')
                .is_some_and(|(d, n)| d == dir && n.starts_with("agent-"));
            if (other.starts_with(&sub) && !other[sub.len()..].contains('/'))
                || (beside && session_id_of(bytes).as_deref() == Some(id))
            {
                files.push(other.clone());
            }
        }
        out.push((id.to_string(), files));
    }
    out
}

fn read(tree: &BTreeMap<String, Vec<u8>>, files: &[String]) -> Session {
    let files: Vec<File<'_>> = files
        .iter()
        .map(|k| File {
            key: k,
            bytes: &tree[k],
        })
        .collect();
    build(&files)
}

/// Every conversation of a session, the nested ones too.
fn all_conversations(s: &Session) -> Vec<&Conversation> {
    let mut out = vec![&s.conversation];
    let mut i = 0;
    while i < out.len() {
        let c = out[i];
        for item in &c.items {
            if let ItemKind::Response(r) = &item.kind {
                for b in &r.blocks {
                    if let Block::Tool(call) = b {
                        if let Some(sub) = &call.subagent {
                            out.push(&sub.conversation);
                        }
                    }
                }
            }
        }
        i += 1;
    }
    out.extend(s.unlinked.iter().map(|a| &a.conversation));
    out
}

#[test]
fn real_sessions_pair_order_and_nest() {
    let tree = tree();
    let sessions = sessions(&tree);
    assert!(sessions.len() > 20, "{} sessions", sessions.len());
    let mut report = Vec::new();
    for (id, files) in &sessions {
        let s = read(&tree, files);
        // What the files say: parents, calls, results.
        let mut parent: HashMap<String, String> = HashMap::new();
        let mut results: HashSet<String> = HashSet::new();
        for f in files {
            for line in tree[f].split(|&b| b == b'\n') {
                let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
                    continue;
                };
                if let (Some(u), Some(p)) = (
                    v.get("uuid").and_then(|x| x.as_str()),
                    v.get("parentUuid").and_then(|x| x.as_str()),
                ) {
                    parent.entry(u.into()).or_insert_with(|| p.into());
                }
                if let Some(blocks) = v.pointer("/message/content").and_then(|c| c.as_array()) {
                    for b in blocks {
                        if b.get("type").and_then(|t| t.as_str()) == Some("tool_result") {
                            if let Some(id) = b.get("tool_use_id").and_then(|x| x.as_str()) {
                                results.insert(id.into());
                            }
                        }
                    }
                }
            }
        }
        let (mut calls, mut paired, mut nested) = (0, 0, 0);
        for c in all_conversations(&s) {
            let at: HashMap<&str, usize> = c
                .items
                .iter()
                .enumerate()
                .filter_map(|(i, it)| it.uuid.as_deref().map(|u| (u, i)))
                .collect();
            for (i, item) in c.items.iter().enumerate() {
                if let Some(p) = item.uuid.as_ref().and_then(|u| parent.get(u)) {
                    if let Some(&pi) = at.get(p.as_str()) {
                        assert!(pi < i, "{id}: {:?} shown before its parent {p}", item.uuid);
                    }
                }
                if let ItemKind::Response(r) = &item.kind {
                    for b in &r.blocks {
                        if let Block::Tool(call) = b {
                            calls += 1;
                            if results.contains(&call.id) {
                                assert!(call.result.is_some(), "{id}: call {} unpaired", call.id);
                                paired += 1;
                            }
                            nested += call.subagent.is_some() as usize;
                        }
                    }
                }
            }
        }
        report.push((
            id.clone(),
            files.len(),
            calls,
            paired,
            nested,
            s.unlinked.len(),
        ));
    }
    let get = |prefix: &str| {
        report
            .iter()
            .find(|r| r.0.starts_with(prefix))
            .unwrap_or_else(|| panic!("no session {prefix}"))
    };
    // 2.1: six subagents under `<session>/subagents/`, each at the call that started it.
    let (_, files, _, _, nested, unlinked) = get("ef958aa1");
    assert_eq!((*files, *nested, *unlinked), (7, 6, 0));
    // 2.0: `agent-*.jsonl` beside the session, found by the prompt they were given; the
    // one-line "warm-up" agents no call started are kept, unlinked.
    let (_, files, _, _, nested, unlinked) = get("cb2e607c");
    assert_eq!((*files, *nested, *unlinked), (4, 1, 2));
    let (_, files, calls, _, nested, unlinked) = get("7acd37a8");
    assert_eq!(
        (*files, *nested, *unlinked),
        (5, 0, 4),
        "{calls} calls, no Task"
    );
    // 1.0: inline sidechains.
    let (_, _, _, _, nested, _) = get("fe5e1c67");
    assert!(*nested >= 1, "1.0 inline: {:?}", get("fe5e1c67"));
    // A pasted screenshot is kept as an image of the prompt.
    let images = read(
        &tree,
        &sessions
            .iter()
            .find(|s| s.0.starts_with("0d3a8e6f"))
            .unwrap()
            .1,
    )
    .conversation
    .items
    .iter()
    .filter(|i| matches!(&i.kind, ItemKind::Prompt { images, .. } if !images.is_empty()))
    .count();
    assert!(images >= 1);
}
