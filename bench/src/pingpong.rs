//! `bench pingpong`: round trips of one message at a time. Client A
//! publishes a ping on a fresh topic and long-polls a second one for the
//! pong; client B, on the same broker or (`--pong-host`, `--pong-port`) on
//! another, long-polls the ping topic and answers each ping with a pong.
//! Both poll with auto-acknowledgement and subscribed from the earliest
//! message before the first ping, so no message is missed when a poll is
//! not waiting yet.

use std::time::{Duration, Instant};

use client::bench::PingPongReport;
use client::wire::PullQuery;
use client::Client;
use indicatif::ProgressBar;

use crate::latency::subscribe_when_replicated;
use crate::plot::{LineChart, PlotArgs};
use crate::report::{micros, percentiles_ms, progress_bar, rows_table, Measured};
use crate::{unique_name, BrokerArgs, Error};

/// How long either side waits for the other's message before the run fails.
const MESSAGE_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, clap::Args)]
pub struct PingPongArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Round trips, one at a time
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub round_trips: u64,
    /// Bytes of each payload
    #[arg(long, default_value_t = 100)]
    pub payload_bytes: usize,
    /// Answer the pings on this host instead [default: --host]
    #[arg(long)]
    pub pong_host: Option<String>,
    /// Answer the pings on this port instead [default: --port]
    #[arg(long)]
    pub pong_port: Option<u16>,
    /// Print the report as one JSON object instead of a table
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub plot: PlotArgs,
}

impl PingPongArgs {
    /// The broker client B uses.
    fn pong_broker(&self) -> BrokerArgs {
        self.broker
            .overridden_by(self.pong_host.as_ref(), self.pong_port)
    }
}

/// The names both sides use: one publisher, and the two topics, each read
/// by a subscriber of the same name.
struct Names {
    publisher: String,
    ping: String,
    pong: String,
    payload: String,
}

/// Sets up a publisher (named [`unique_name`]), the topics `<name>-ping`
/// and `<name>-pong` and their subscribers, plays the round trips and
/// reports, keeping each round trip's time.
pub async fn run(args: &PingPongArgs) -> Result<Measured<PingPongReport>, Error> {
    let publisher = unique_name();
    let names = Names {
        ping: format!("{publisher}-ping"),
        pong: format!("{publisher}-pong"),
        payload: "x".repeat(args.payload_bytes),
        publisher,
    };
    let (a, b) = (args.broker.client(), args.pong_broker().client());
    a.register_publisher(&names.publisher).await?;
    // The pong topic first: a broker holds a gapless prefix of another's
    // events, so once the ping topic reached B's broker, the pong topic did.
    a.create_topic(&names.pong, &names.publisher).await?;
    a.create_topic(&names.ping, &names.publisher).await?;
    b.register_publisher(&names.publisher).await?;
    for (client, topic) in [(&a, &names.pong), (&b, &names.ping)] {
        client.register_subscriber(topic).await?;
        subscribe_when_replicated(client, topic).await?;
    }
    let progress = progress_bar(args.round_trips);
    let started = Instant::now();
    let (samples, ()) = tokio::try_join!(
        names.ping_side(&a, args.round_trips, &progress),
        names.pong_side(&b, args.round_trips),
    )?;
    let seconds = started.elapsed().as_secs_f64();
    progress.finish_and_clear();
    let round_trips = samples.len() as u64;
    let report = PingPongReport {
        ping_topic: names.ping,
        pong_topic: names.pong,
        payload_bytes: args.payload_bytes as u64,
        round_trips,
        seconds,
        round_trips_per_sec: round_trips as f64 / seconds,
        latency_ms: percentiles_ms(samples.clone()),
    };
    Ok(Measured {
        report,
        samples_us: samples,
    })
}

impl Names {
    /// A: publishes `n` pings, each once the pong to the one before came;
    /// returns each round trip's time, in µs.
    async fn ping_side(
        &self,
        client: &Client,
        n: u64,
        progress: &ProgressBar,
    ) -> Result<Vec<i64>, Error> {
        let mut samples = Vec::new();
        for _ in 0..n {
            let sent = Instant::now();
            client
                .publish(&self.ping, &self.publisher, &self.payload)
                .await?;
            receive_one(client, &self.pong).await?;
            samples.push(micros(sent.elapsed()));
            progress.inc(1);
        }
        Ok(samples)
    }

    /// B: answers each of `n` pings with a pong.
    async fn pong_side(&self, client: &Client, n: u64) -> Result<(), Error> {
        for _ in 0..n {
            receive_one(client, &self.ping).await?;
            client
                .publish(&self.pong, &self.publisher, &self.payload)
                .await?;
        }
        Ok(())
    }
}

/// Long-polls topic `name` as subscriber `name`, acknowledging on receipt,
/// until a message comes. Fails after [`MESSAGE_DEADLINE`], or when more
/// than one comes: only one is ever in flight.
async fn receive_one(client: &Client, name: &str) -> Result<(), Error> {
    let deadline = Instant::now() + MESSAGE_DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Failed(format!(
                "no message on {name} within {MESSAGE_DEADLINE:?}"
            )));
        }
        let query = PullQuery {
            topic: Some(name.to_string()),
            max: None,
            wait_ms: Some(u64::try_from(left.as_millis()).unwrap_or(u64::MAX)),
            auto_ack: Some(true),
        };
        match client.pull(name, &query).await?.messages.len() {
            0 => continue,
            1 => return Ok(()),
            n => {
                return Err(Error::Failed(format!(
                    "{n} messages on {name} at once, but one at a time was sent"
                )))
            }
        }
    }
}

/// The chart of `--plot`: the distribution of the round trips' times.
pub fn chart(run: &Measured<PingPongReport>) -> LineChart {
    let r = &run.report;
    let title = format!(
        "bench pingpong: round trip ({} round trips, {} B payloads, {:.0} rt/s)",
        r.round_trips, r.payload_bytes, r.round_trips_per_sec
    );
    LineChart::latency_distribution(&title, &[("ping → pong", &run.samples_us)])
}

/// The report as plain text: the topics, then a header and one row.
pub fn table(report: &PingPongReport) -> String {
    const COLUMNS: [&str; 3] = ["round_trips", "seconds", "rt/s"];
    let row = vec![
        report.round_trips.to_string(),
        format!("{:.2}", report.seconds),
        format!("{:.0}", report.round_trips_per_sec),
    ];
    let title = format!("topics: {}, {}", report.ping_topic, report.pong_topic);
    rows_table(&title, &COLUMNS, vec![(row, report.latency_ms.as_ref())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pong_side_uses_the_ping_broker_unless_told_otherwise() {
        let mut args = PingPongArgs {
            broker: BrokerArgs {
                host: "a".to_string(),
                port: 1,
                token_file: None,
                token: None,
            },
            round_trips: 1,
            payload_bytes: 1,
            pong_host: None,
            pong_port: Some(2),
            json: false,
            plot: PlotArgs { plot: None },
        };
        let pong = args.pong_broker();
        assert_eq!((pong.host.as_str(), pong.port), ("a", 2));
        args.pong_host = Some("b".to_string());
        assert_eq!(args.pong_broker().host, "b");
    }

    #[test]
    fn table_has_the_topics_a_header_and_one_row() {
        let report = PingPongReport {
            ping_topic: "t-ping".to_string(),
            pong_topic: "t-pong".to_string(),
            payload_bytes: 100,
            round_trips: 20,
            seconds: 0.5,
            round_trips_per_sec: 40.0,
            latency_ms: percentiles_ms(vec![25_000]),
        };
        let text = table(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "topics: t-ping, t-pong");
        assert!(lines[1].starts_with("round_trips  seconds  rt/s  p50_ms"));
        let row: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(row[..4], ["20", "0.50", "40", "25.000"]);
    }
}
