//! `docs/states.md` shows the state table as it is.

use orderflow_core::state::mermaid_diagram;

#[test]
fn the_documented_diagram_matches_the_state_table() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/states.md");
    let doc = std::fs::read_to_string(path).expect("docs/states.md exists");
    let start = doc.find("```mermaid\n").expect("a mermaid block") + "```mermaid\n".len();
    let end = start + doc[start..].find("```").expect("the block ends");
    assert_eq!(
        &doc[start..end],
        mermaid_diagram(),
        "docs/states.md is stale: replace its mermaid block with the output of `orderctl states`"
    );
}
