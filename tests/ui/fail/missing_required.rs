use lockattr::distributed_lock;

#[distributed_lock]
async fn report() {}

fn main() {}
