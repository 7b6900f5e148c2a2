// A lock without a policy cannot be fetched: `fetch_all` exists only after `skip`, `error`
// or `wait`.
async fn claim(mut tx: sqlx::Transaction<'static, sqlx::Postgres>) {
    let _ = lockattr::rows::lock(&mut tx, sqlx::query_scalar::<_, i64>("SELECT id FROM jobs"))
        .fetch_all()
        .await;
}

fn main() {
    let _ = claim;
}
