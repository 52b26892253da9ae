//! `tracing` to `juju-log`: a layer that sends each event at or above its
//! level to the unit's log, prefixed with the names of the spans it is in
//! (one span per hook or action), with the event's fields as `key=value`.

use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use super::tools::{HookTools, LogLevel};

/// Sends tracing events to `juju-log`, each prefixed with the values of the
/// fields of the spans it is in: `[get-password] message key=value`.
pub struct JujuLogLayer<T> {
    tools: T,
    min_level: Level,
}

impl<T> JujuLogLayer<T> {
    /// `min_level` is the least severe level sent: each line is a process.
    pub fn new(tools: T, min_level: Level) -> Self {
        Self { tools, min_level }
    }
}

/// The formatted fields of a span, kept in its extensions.
struct SpanFields(String);

#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.rest, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }
}

fn juju_level(level: &Level) -> LogLevel {
    match *level {
        Level::ERROR => LogLevel::Error,
        Level::WARN => LogLevel::Warning,
        Level::INFO => LogLevel::Info,
        Level::DEBUG => LogLevel::Debug,
        Level::TRACE => LogLevel::Trace,
    }
}

impl<S, T> Layer<S> for JujuLogLayer<T>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    T: HookTools + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            let values: Vec<&str> = fields
                .rest
                .split(' ')
                .filter_map(|kv| kv.split_once('='))
                .map(|(_, v)| v)
                .collect();
            span.extensions_mut().insert(SpanFields(values.join(" ")));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let level = event.metadata().level();
        // Level's ordering: TRACE > DEBUG > INFO > WARN > ERROR.
        if *level > self.min_level {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut line = String::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(f) = span.extensions().get::<SpanFields>() {
                    let _ = write!(line, "[{}] ", f.0);
                }
            }
        }
        line.push_str(&fields.message);
        line.push_str(&fields.rest);
        // Logging must never fail a hook; stderr still reaches Juju's log.
        if self.tools.juju_log(juju_level(level), &line).is_err() {
            eprintln!("{line}");
        }
    }
}
