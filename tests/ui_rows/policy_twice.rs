// One policy per lock: a second one does not compile (`skip`, `error` and `wait` exist only
// before a policy is chosen).
async fn claim(mut tx: sqlx::Transaction<'static, sqlx::Postgres>) {
    let _ = lockattr::rows::lock(&mut tx, sqlx::query_scalar::<_, i64>("SELECT id FROM jobs"))
        .error()
        .wait(std::time::Duration::from_secs(1))
        .fetch_all()
        .await;
}

fn main() {
    let _ = claim;
}
