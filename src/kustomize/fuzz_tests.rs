//! Property and hostile-input tests for the YAML reader, the emitter and
//! the patch code: random inputs must give a value or an error, never a
//! panic, and everything the emitter writes must read back unchanged.
//! A small deterministic generator keeps the runs reproducible.

use serde_json::{json, Map, Value};

use super::emit::to_yaml_document;
use super::{json_patch, smp, yaml};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const PIECES: &[&str] = &[
    "",
    " ",
    "a",
    "Z",
    "0",
    "1",
    "-",
    ".",
    ":",
    ": ",
    "#",
    " #",
    "'",
    "\"",
    "\\",
    "\n",
    "\t",
    "{",
    "}",
    "[",
    "]",
    ",",
    "&",
    "*",
    "!",
    "|",
    ">",
    "%",
    "@",
    "`",
    "?",
    "~",
    "true",
    "no",
    "y",
    "null",
    "1e3",
    "0x1F",
    "0755",
    "2024-01-01",
    "é",
    "🚀",
    "---",
    "...",
    "long text with many words that goes on and on",
];

fn random_string(rng: &mut Rng) -> String {
    (0..rng.below(6))
        .map(|_| PIECES[rng.below(PIECES.len())])
        .collect()
}

fn random_value(rng: &mut Rng, depth: usize) -> Value {
    let choice = if depth > 4 {
        rng.below(5)
    } else {
        rng.below(8)
    };
    match choice {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 => json!(rng.next() as i64 >> rng.below(60)),
        3 => json!((rng.next() % 100_000) as f64 / 7.0),
        4 => Value::String(random_string(rng)),
        5 | 6 => {
            let mut map = Map::new();
            for _ in 0..rng.below(5) {
                map.insert(random_string(rng), random_value(rng, depth + 1));
            }
            Value::Object(map)
        }
        _ => Value::Array(
            (0..rng.below(4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
    }
}

/// Equal values; numbers compare by value (an integral float prints as an
/// integer, as kubectl prints it).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

#[test]
fn everything_emitted_reads_back_as_the_same_value() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..3000 {
        let value = json!({"apiVersion": "v1", "kind": "K", "data": random_value(&mut rng, 0)});
        let text = to_yaml_document(&value);
        let back = yaml::parse_one(std::path::Path::new("emitted"), &text)
            .unwrap_or_else(|e| panic!("emitted YAML does not parse: {e}\n{text}"));
        assert!(
            same(&back, &value),
            "round trip changed the value:\n{text}\n{back:?}\n{value:?}"
        );
    }
}

#[test]
fn mutated_yaml_gives_a_value_or_an_error_never_a_panic() {
    let seed = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels: {a: b}\nspec:\n  template:\n    spec:\n      containers:\n      - name: app\n        image: nginx\n        args: [\"a\", 'b']\n        env: &e\n        - {name: X, value: \"1\"}\n      initContainers:\n      - name: init\n        env: *e\ndata: |\n  block\n";
    let mut rng = Rng(42);
    for _ in 0..5000 {
        let mut bytes = seed.as_bytes().to_vec();
        for _ in 0..1 + rng.below(8) {
            let at = rng.below(bytes.len());
            match rng.below(3) {
                0 => bytes[at] = b"{}[]:-&*!|>'\"\n #,?"[rng.below(18)],
                1 => {
                    bytes.remove(at);
                }
                _ => bytes.insert(at, bytes[rng.below(bytes.len())]),
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(docs) = yaml::parse_documents(std::path::Path::new("fuzz"), &text) {
            for doc in &docs {
                let _ = to_yaml_document(doc);
                let _ = smp::apply(doc, doc);
            }
        }
    }
}

#[test]
fn random_patches_apply_or_fail_without_panicking() {
    let mut rng = Rng(7);
    for _ in 0..3000 {
        let target = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"template": {"spec": {"containers": random_value(&mut rng, 2), "volumes": [{"name": "v"}]}}}});
        let patch = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"template": {"spec": {"containers": random_value(&mut rng, 2), "volumes": random_value(&mut rng, 3)}}}});
        let _ = smp::apply(&target, &patch);
        let op = ["add", "remove", "replace", "move", "copy", "test", "bogus"][rng.below(7)];
        let path = [
            "",
            "/",
            "/spec/-",
            "/spec/template/spec/containers/0",
            "/spec/99999999999999999999",
            "/a~1b/~0",
            "x",
        ][rng.below(7)];
        let ops = json!([{"op": op, "path": path, "from": "/metadata", "value": random_value(&mut rng, 3)}]);
        let mut doc = target.clone();
        let _ = json_patch::apply(&mut doc, &ops);
    }
}

#[test]
fn depth_is_counted_without_recursion() {
    let mut deep = json!(1);
    for _ in 0..100_000 {
        deep = Value::Array(vec![deep]);
    }
    assert_eq!(yaml::depth(&deep), 100_001);
    // Dropping this value recursively would overflow the stack.
    std::mem::forget(deep);
}

#[test]
fn hostile_documents_are_errors() {
    let path = std::path::Path::new("hostile.yaml");
    // Deep flow and block nesting.
    assert!(yaml::parse_documents(path, &("[".repeat(50_000) + &"]".repeat(50_000))).is_err());
    assert!(yaml::parse_documents(path, &"- ".repeat(50_000)).is_err());
    // An alias bomb (a billion laughs).
    let mut bomb = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for (prev, next) in ["a", "b", "c", "d", "e", "f", "g", "h"]
        .iter()
        .zip(["b", "c", "d", "e", "f", "g", "h", "i"])
    {
        let refs = vec![format!("*{prev}"); 9].join(",");
        bomb.push_str(&format!("{next}: &{next} [{refs}]\n"));
    }
    assert!(yaml::parse_documents(path, &bomb).is_err());
    // Larger than the size limit.
    let huge = "a".repeat(yaml::MAX_FILE_BYTES + 1);
    assert!(yaml::parse_documents(path, &huge).is_err());
}
