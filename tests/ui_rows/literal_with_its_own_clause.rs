// `lockattr::rows::sql!` refuses at compile time a literal that cannot take a lock clause.
const CLAIM: &str = lockattr::rows::sql!("SELECT id FROM jobs FOR UPDATE");

fn main() {
    let _ = CLAIM;
}
