use anyhow::Context as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = beckon_runtime::init_telemetry("webhook-delivery");
    let config =
        webhook_delivery::Config::from_env().context("Failed to read the configuration")?;
    webhook_delivery::run(config, beckon_runtime::shutdown_token()).await
}
