// Row locks outside a transaction would end with their statement: `lockattr::rows::lock`
// takes `&mut sqlx::Transaction`, and a connection does not compile.
async fn claim(pool: sqlx::PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    let _ = lockattr::rows::lock(&mut *conn, sqlx::query_scalar::<_, i64>("SELECT id FROM jobs"))
        .skip()
        .fetch_all()
        .await;
}

fn main() {
    let _ = claim;
}
