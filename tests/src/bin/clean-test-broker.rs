//! Deletes the queues and exchanges named on stdin (one per line) over AMQP, much faster than
//! one `rabbitmqctl` call each. `scripts/clean-test-broker.sh` feeds it the names test runs
//! left behind.

use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use std::io::BufRead;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let conn = lapin::Connection::connect(&beckon_e2e::amqp_url(), Default::default()).await?;
    let channel = conn.create_channel().await?;
    let (mut queues, mut exchanges) = (0, 0);
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let Some((kind, name)) = line.trim().split_once(' ') else {
            continue;
        };
        match kind {
            "queue" => {
                channel
                    .queue_delete(name.into(), QueueDeleteOptions::default())
                    .await?;
                queues += 1;
            }
            "exchange" => {
                channel
                    .exchange_delete(name.into(), ExchangeDeleteOptions::default())
                    .await?;
                exchanges += 1;
            }
            _ => {}
        }
    }
    eprintln!("deleted {queues} queues and {exchanges} exchanges left by test runs");
    Ok(())
}
