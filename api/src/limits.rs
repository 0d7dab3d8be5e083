//! The size bounds of what tenants send, in one place.
//!
//! Every bound a tenant can reach (through gRPC, WIT or a file) is a constant here, so the
//! master, the agent and the Wasm executor check the same number, and the `.proto`/`.wit` docs
//! can name it. A bound that an input passes through several hops must fit on every hop.

/// The longest guest log line kept, in characters (a scheduler's or an executor's `log` call):
/// the rest of the line is dropped before it reaches the host's log.
pub const GUEST_LOG_LINE_MAX_CHARS: usize = 4096;

/// Most tasks one `Accept` (or a hosted scheduler's `driver.launch`) may launch. A call with
/// more is refused whole, before any task is read, with an `Error` event (a hosted scheduler:
/// the call's error) naming this cap and the count; the offers it named return to the pool.
///
/// 1,024 tasks of small specs make a `RunTasks` to the agent of about 150 KB, far below the
/// agent's 4 MiB decode limit. The cap also stays below the master's default event queue
/// per scheduler (4,096), so the `ERROR` updates of one refused launch fit in an idle queue.
pub const MAX_TASKS_PER_LAUNCH: usize = 1024;

/// Most offer ids one `Accept` (or `driver.launch`) may name; a call with more is refused
/// whole, like one with more than [`MAX_TASKS_PER_LAUNCH`] tasks. All offers of one accept are
/// of one agent, and an agent has at most one outstanding offer per framework, so a real
/// accept names one or a few.
pub const MAX_OFFERS_PER_ACCEPT: usize = 256;

/// Problems a refused launch's message names; the rest are only counted
/// (`... and 9,995 more problems`).
pub const REFUSAL_PROBLEMS_LISTED: usize = 5;

/// Most bytes of a refused launch's message. The message is copied into every named task's
/// `ERROR` update, so it must not grow with the number of tasks: it names the first
/// [`REFUSAL_PROBLEMS_LISTED`] problems, each cut to fit, and counts the rest.
pub const MAX_REFUSAL_MESSAGE_BYTES: usize = 2048;

/// Why an `Accept` is too large to be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcceptTooLarge {
    /// More tasks than [`MAX_TASKS_PER_LAUNCH`].
    #[error(
        "launch refused: it has {count} tasks; at most {MAX_TASKS_PER_LAUNCH} may be launched \
         in one call, so split it over several offers or calls"
    )]
    Tasks {
        /// The number of tasks in the call.
        count: usize,
    },
    /// More offer ids than [`MAX_OFFERS_PER_ACCEPT`].
    #[error(
        "launch refused: it names {count} offer ids; at most {MAX_OFFERS_PER_ACCEPT} may be \
         named in one call (all of one agent)"
    )]
    Offers {
        /// The number of offer ids in the call.
        count: usize,
    },
}

/// Checks the two counts of an `Accept` (or `driver.launch`) against their caps.
pub fn check_accept_size(offer_ids: usize, tasks: usize) -> Result<(), AcceptTooLarge> {
    if tasks > MAX_TASKS_PER_LAUNCH {
        return Err(AcceptTooLarge::Tasks { count: tasks });
    }
    if offer_ids > MAX_OFFERS_PER_ACCEPT {
        return Err(AcceptTooLarge::Offers { count: offer_ids });
    }
    Ok(())
}

/// The message of a refused launch: `launch refused: ` and the first
/// [`REFUSAL_PROBLEMS_LISTED`] problems, `; `-separated, then a count of the rest; at most
/// [`MAX_REFUSAL_MESSAGE_BYTES`] bytes however many problems there are or however long they
/// are (a long problem is cut, ending in `…`).
pub fn refusal_message(problems: &[String]) -> String {
    const PREFIX: &str = "launch refused: ";
    // Room for the count of the rest ("; ... and 18446744073709551615 more problems").
    const TAIL_ROOM: usize = 64;
    let per_problem =
        (MAX_REFUSAL_MESSAGE_BYTES - PREFIX.len() - TAIL_ROOM) / REFUSAL_PROBLEMS_LISTED - 2;
    let mut out = String::from(PREFIX);
    for (i, p) in problems.iter().take(REFUSAL_PROBLEMS_LISTED).enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        out.push_str(&cut(p, per_problem));
    }
    let rest = problems.len().saturating_sub(REFUSAL_PROBLEMS_LISTED);
    if rest > 0 {
        out.push_str(&format!(
            "; ... and {rest} more problem{}",
            if rest == 1 { "" } else { "s" }
        ));
    }
    out
}

/// `s` cut to at most `max` bytes at a character boundary, ending in `…` when cut.
fn cut(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end]).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_lists_a_few_problems_and_counts_the_rest() {
        let problems: Vec<String> = (0..10_000).map(|i| format!("task t{i}: bad")).collect();
        let m = refusal_message(&problems);
        assert!(m.len() <= MAX_REFUSAL_MESSAGE_BYTES, "{}", m.len());
        assert!(
            m.starts_with("launch refused: task t0: bad; task t1: bad"),
            "{m}"
        );
        assert!(m.contains("task t4: bad") && !m.contains("task t5:"), "{m}");
        assert!(m.ends_with("... and 9995 more problems"), "{m}");
    }

    #[test]
    fn a_refusal_at_the_listed_bound_counts_nothing() {
        let at: Vec<String> = (0..REFUSAL_PROBLEMS_LISTED)
            .map(|i| format!("p{i}"))
            .collect();
        assert!(!refusal_message(&at).contains("more problem"));
        let past: Vec<String> = (0..=REFUSAL_PROBLEMS_LISTED)
            .map(|i| format!("p{i}"))
            .collect();
        assert!(refusal_message(&past).ends_with("... and 1 more problem"));
    }

    #[test]
    fn long_problems_are_cut_to_the_bound() {
        let problems = vec!["é".repeat(100_000); 7];
        let m = refusal_message(&problems);
        assert!(m.len() <= MAX_REFUSAL_MESSAGE_BYTES, "{}", m.len());
        assert!(
            m.contains('…') && m.ends_with("... and 2 more problems"),
            "{m}"
        );
    }

    #[test]
    fn accept_sizes_at_one_past_and_far_past_the_caps() {
        assert_eq!(
            check_accept_size(MAX_OFFERS_PER_ACCEPT, MAX_TASKS_PER_LAUNCH),
            Ok(())
        );
        assert_eq!(
            check_accept_size(1, MAX_TASKS_PER_LAUNCH + 1),
            Err(AcceptTooLarge::Tasks {
                count: MAX_TASKS_PER_LAUNCH + 1
            })
        );
        assert_eq!(
            check_accept_size(MAX_OFFERS_PER_ACCEPT + 1, 1),
            Err(AcceptTooLarge::Offers {
                count: MAX_OFFERS_PER_ACCEPT + 1
            })
        );
        let far = check_accept_size(1, 100_000).unwrap_err().to_string();
        assert!(
            far.contains("100000 tasks") && far.contains("1024"),
            "{far}"
        );
    }
}
