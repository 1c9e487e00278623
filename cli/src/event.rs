//! The event system's client ([`EventsClient`]) and `lockstep event ...`.

use std::process::ExitCode;

use anyhow::Context;
use jsonrpsee::http_client::HttpClient;
use jsonrpsee::ws_client::WsClient;
use lockstep_api::client::{ClientOptions, Subscription};
use lockstep_api::event::{Event, RegisterRequest, Transition};
use lockstep_api::lifecycle::State;
use lockstep_api::offchain::{EventApiClient, ListParams, Page, Stats, TransitionFilter, MAX_PAGE};
use serde_json::json;

use crate::args::EventCommand;
use crate::output::print;
use crate::rpc::{http, ws, At};
use crate::EXIT_CANCELLED;

/// Where the event system is, and how to connect to it (`--events`;
/// `--token`, `--ca-file`).
#[derive(Debug, Clone)]
pub struct EventsEndpoint {
    /// Its URL.
    pub url: String,
    /// The clients' options: the bearer token, if any (the event system
    /// refuses calls without one unless it runs with --insecure-no-auth),
    /// and the CAs trusted for https:// and wss://.
    pub options: ClientOptions,
}

/// The event system, over HTTP (and WebSocket for subscriptions).
#[derive(Debug, Clone)]
pub struct EventsClient {
    /// Its URL.
    pub url: String,
    /// The HTTP client.
    pub http: HttpClient,
    options: ClientOptions,
}

impl EventsClient {
    /// A client (nothing connected yet).
    pub fn new(endpoint: &EventsEndpoint) -> anyhow::Result<EventsClient> {
        Ok(EventsClient {
            url: endpoint.url.clone(),
            http: http(&endpoint.url, &endpoint.options)?,
            options: endpoint.options.clone(),
        })
    }

    /// Registers an event.
    pub async fn register(&self, request: &RegisterRequest) -> anyhow::Result<Event> {
        self.http
            .register(request.clone())
            .await
            .at("registering the event", &self.url)
    }

    /// An event.
    pub async fn get(&self, id: &str) -> anyhow::Result<Event> {
        self.http
            .get(id.to_owned())
            .await
            .at("reading the event", &self.url)
    }

    /// An event's history.
    pub async fn history(&self, id: &str) -> anyhow::Result<Vec<Transition>> {
        self.http
            .history(id.to_owned())
            .await
            .at("reading the history", &self.url)
    }

    /// Counts per state, bus depth, last sequence and height.
    pub async fn stats(&self) -> anyhow::Result<Stats> {
        self.http.stats().await.at("reading the stats", &self.url)
    }

    /// One page of events.
    pub async fn list(
        &self,
        state: Option<State>,
        overdue: bool,
        cursor: Option<&str>,
        limit: u64,
    ) -> anyhow::Result<Page> {
        let params = ListParams {
            state,
            overdue,
            cursor: cursor.map(str::to_owned),
            limit: Some(
                usize::try_from(limit)
                    .unwrap_or(MAX_PAGE)
                    .clamp(1, MAX_PAGE),
            ),
        };
        self.http
            .list(Some(params))
            .await
            .at("listing events", &self.url)
    }

    /// Subscribes to transitions from `from_seq` (default: new ones only),
    /// only those `filter` matches (the event system filters them).
    pub async fn subscribe(
        &self,
        from_seq: Option<u64>,
        filter: Option<TransitionFilter>,
    ) -> anyhow::Result<(WsClient, Subscription<Transition>)> {
        let client = self.connect().await?;
        let subscription = self.subscribe_on(&client, from_seq, filter).await?;
        Ok((client, subscription))
    }

    /// A WebSocket connection, for [`Self::subscribe_on`].
    pub async fn connect(&self) -> anyhow::Result<WsClient> {
        ws(&self.url, &self.options).await
    }

    /// [`Self::subscribe`] on a connection already open (the subscription
    /// lasts as long as `client`).
    pub async fn subscribe_on(
        &self,
        client: &WsClient,
        from_seq: Option<u64>,
        filter: Option<TransitionFilter>,
    ) -> anyhow::Result<Subscription<Transition>> {
        client
            .subscribe_transitions(from_seq, filter)
            .await
            .at("subscribing to transitions", &self.url)
    }
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS.mmm` UTC.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil from days (Howard Hinnant's algorithm), for days ≥ 0.
    let z = days as i64 + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// An event in a few lines.
pub fn describe_event(event: &Event) -> String {
    let p = &event.payment;
    let mut text = format!(
        "event {}: {} since {}\n  transfer {} (valid until #{})\n  payment {} -> {}: {} {} (minor units)\n  registered {}",
        event.id,
        event.state,
        utc(event.state_since_ms),
        event.tx_hash,
        event.valid_until,
        p.payer,
        p.payee,
        p.amount,
        p.currency,
        utc(event.created_at_ms),
    );
    if let Some(e) = &event.evidence {
        let outcome = match &e.outcome {
            Some(o) if o.is_success() => "succeeded".to_owned(),
            Some(o) => format!("failed ({o:?})"),
            None => "not included before expiry".to_owned(),
        };
        let block = e
            .block_hash
            .map(|h| format!(" in block #{} {h}", e.block_number))
            .unwrap_or_else(|| format!(" (at height #{})", e.block_number));
        text.push_str(&format!(
            "\n  on chain: {outcome}{block}; confirmed by {} of {} nodes",
            e.confirmed_by.len(),
            e.nodes_asked
        ));
    }
    if let Some(r) = &event.receipt {
        text.push_str(&format!("\n  paid: reference {}", r.payment_reference));
    }
    if !event.state.is_final() && event.checks + event.resends > 0 {
        text.push_str(&format!(
            "\n  re-checks {}, re-sends {}",
            event.checks, event.resends
        ));
    }
    text
}

/// A transition in one line.
pub fn describe_transition(t: &Transition) -> String {
    let from = t.from.map(|s| format!("{s} -> ")).unwrap_or_default();
    let reason = t.reason.map(|r| format!(" ({r:?})")).unwrap_or_default();
    let mut line = format!(
        "#{} {} {}: {from}{}{reason}",
        t.seq,
        utc(t.at_ms),
        t.event_id,
        t.to
    );
    if let Some(e) = &t.evidence {
        line.push_str(&format!(
            ", block #{}, confirmed by {}/{}",
            e.block_number,
            e.confirmed_by.len(),
            e.nodes_asked
        ));
    }
    if let Some(reference) = &t.payment_reference {
        line.push_str(&format!(", payment {reference}"));
    }
    line
}

/// `lockstep event ...`.
pub async fn run(
    endpoint: &EventsEndpoint,
    json_mode: bool,
    command: EventCommand,
) -> anyhow::Result<ExitCode> {
    // Nothing connects until a call is made (and `verify --from-file`
    // makes none).
    let events = EventsClient::new(endpoint)?;
    match command {
        EventCommand::Verify {
            id,
            chain_spec,
            from_file,
        } => {
            return crate::verify::run(&events, json_mode, id, &chain_spec, from_file).await;
        }
        EventCommand::Get { id } => {
            let event = events.get(&id).await?;
            print(json_mode, &json!(event), describe_event(&event));
        }
        EventCommand::History { id } => {
            let history = events.history(&id).await?;
            let text: Vec<String> = history.iter().map(describe_transition).collect();
            print(json_mode, &json!(history), text.join("\n"));
        }
        EventCommand::Stats => {
            let stats = events.stats().await?;
            let height = stats
                .last_height
                .map_or_else(|| "none".to_owned(), |h| h.to_string());
            let text = format!(
                "registered {}, pending account {} ({} overdue), completed {}, cancelled {}\nbus depth {}, last transition #{}, last height {height}",
                stats.registered,
                stats.pending_account,
                stats.overdue,
                stats.completed,
                stats.cancelled,
                stats.bus_depth,
                stats.last_seq,
            );
            print(json_mode, &json!(stats), text);
        }
        EventCommand::List {
            state,
            overdue,
            limit,
            after,
        } => {
            let mut cursor = after;
            let mut listed: Vec<Event> = Vec::new();
            loop {
                let want = limit - listed.len() as u64;
                let page = events.list(state, overdue, cursor.as_deref(), want).await?;
                listed.extend(page.events);
                cursor = page.next_cursor;
                if cursor.is_none() || listed.len() as u64 >= limit {
                    break;
                }
            }
            let mut text: Vec<String> = listed
                .iter()
                .map(|e| {
                    format!(
                        "{:<14} {} {} -> {} {} {} tx {}",
                        e.state.name(),
                        e.id,
                        e.payment.payer,
                        e.payment.payee,
                        e.payment.amount,
                        e.payment.currency,
                        e.tx_hash
                    )
                })
                .collect();
            text.push(format!("{} events", listed.len()));
            if let Some(cursor) = &cursor {
                text.push(format!("more: --after {cursor}"));
            }
            print(
                json_mode,
                &json!({ "events": listed, "nextCursor": cursor }),
                text.join("\n"),
            );
        }
        EventCommand::Watch {
            id,
            prefix,
            states,
            from_seq,
        } => {
            let filter = TransitionFilter {
                event_ids: id.clone().map(|id| vec![id]),
                id_prefix: prefix,
                states: (!states.is_empty()).then_some(states),
            };
            filter.check().context("the filter")?;
            return watch(&events, json_mode, id, filter, from_seq).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn watch(
    events: &EventsClient,
    json_mode: bool,
    id: Option<String>,
    filter: TransitionFilter,
    from_seq: Option<u64>,
) -> anyhow::Result<ExitCode> {
    let mut client = events.connect().await?;
    // Where to resume when the stream breaks: after the last transition
    // seen, or, before any (a filtered stream may be quiet for long), from
    // where it started.
    let mut next_seq = match from_seq {
        Some(seq) => seq,
        None => events.stats().await?.last_seq + 1,
    };
    // Subscribe before reading the current state, so nothing falls between.
    let mut stream = events
        .subscribe_on(&client, Some(next_seq), Some(filter.clone()))
        .await?;
    if let Some(id) = &id {
        let event = events.get(id).await?;
        print(
            json_mode,
            &json!({ "event": event }),
            describe_event(&event),
        );
        if event.state.is_final() && from_seq.is_none() {
            return Ok(final_code(event.state));
        }
    }
    loop {
        while let Some(Ok(transition)) = stream.next().await {
            next_seq = transition.seq + 1;
            if !filter.matches(&transition) {
                continue;
            }
            print(
                json_mode,
                &json!(transition),
                describe_transition(&transition),
            );
            if id.is_some() && transition.to.is_final() {
                return Ok(final_code(transition.to));
            }
        }
        // The stream broke (a slow reader's subscription is dropped, or the
        // event system restarted): resume after the last transition seen.
        client = events
            .connect()
            .await
            .context("the event stream ended; reconnecting failed")?;
        stream = events
            .subscribe_on(&client, Some(next_seq), Some(filter.clone()))
            .await
            .context("the event stream ended; resuming it failed")?;
    }
}

/// The exit code of a final state.
pub fn final_code(state: State) -> ExitCode {
    match state {
        State::Cancelled => ExitCode::from(EXIT_CANCELLED),
        _ => ExitCode::SUCCESS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00.000");
        assert_eq!(utc(951_782_400_123), "2000-02-29 00:00:00.123");
        assert_eq!(utc(1_795_000_000_000), "2026-11-18 11:06:40.000");
    }
}
