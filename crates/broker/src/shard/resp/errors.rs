//! Redis's error replies, byte for byte: arity, unknown (sub)commands, subscribed mode, the
//! subscription limit.

use corecast_proto::resp::{encode, Args};

use super::super::Shard;

/// A name lower-cased for matching and for error texts.
pub(super) fn lower(name: &[u8]) -> String {
    String::from_utf8_lossy(name).to_ascii_lowercase()
}

/// A client argument as Redis's `%.128s` prints it: up to the first NUL, at most 128 bytes.
pub(super) fn c_str(arg: &[u8], max: usize) -> &[u8] {
    let end = arg
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(arg.len())
        .min(max);
    &arg[..end]
}

impl Shard {
    pub(super) fn reply_error(&mut self, key: usize, msg: &str) {
        self.reply_error_bytes(key, msg.as_bytes());
    }

    pub(super) fn reply_error_bytes(&mut self, key: usize, msg: &[u8]) {
        self.reply_with(key, |b| encode::error(b, msg));
    }

    /// Refuses a new channel or pattern when the connection already holds
    /// `max_subscriptions` (one that it holds is never refused: re-subscribing adds nothing).
    /// Redis has no such limit, so no text to copy; one error per refused name keeps the
    /// reply count that clients expect from a multi-channel SUBSCRIBE.
    pub(super) fn refused_past_limit(&mut self, key: usize, already_held: bool) -> bool {
        let held = self.resp_mut(key).subs.total();
        let max = self.cfg.max_subscriptions;
        if already_held || held < max {
            return false;
        }
        self.reply_error(
            key,
            &format!("ERR max subscriptions per connection reached ({max})"),
        );
        true
    }

    /// `unknown subcommand 'x'. Try PUBSUB HELP.`, with `x` as the client sent it.
    pub(super) fn unknown_subcommand(&mut self, key: usize, cmd: &str, sub: &[u8]) {
        self.subcommand_error(key, "ERR unknown subcommand '", cmd, sub);
    }

    /// Redis's `addReplySubcommandSyntaxError`: a known subcommand with arguments it rejects.
    pub(super) fn subcommand_syntax_error(&mut self, key: usize, cmd: &str, sub: &[u8]) {
        let text = "ERR unknown subcommand or wrong number of arguments for '";
        self.subcommand_error(key, text, cmd, sub);
    }

    /// `<text><sub>'. Try <CMD> HELP.`
    pub(super) fn subcommand_error(&mut self, key: usize, text: &str, cmd: &str, sub: &[u8]) {
        let mut m = text.as_bytes().to_vec();
        m.extend_from_slice(c_str(sub, 128));
        m.extend_from_slice(format!("'. Try {} HELP.", cmd.to_ascii_uppercase()).as_bytes());
        self.reply_error_bytes(key, &m);
    }

    pub(super) fn arity_error(&mut self, key: usize, cmd: &str) {
        self.reply_error(
            key,
            &format!("ERR wrong number of arguments for '{cmd}' command"),
        );
    }

    pub(super) fn not_in_subscribed_mode(&mut self, key: usize, cmd: &str) {
        self.reply_error(
            key,
            &format!(
                "ERR Can't execute '{cmd}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
            ),
        );
    }

    /// Redis's `unknown command 'x', with args beginning with: 'a' 'b' `, built from bytes
    /// the way its `%.128s` / `%.*s` formats do (at most 128 bytes of arguments, each cut at
    /// a NUL).
    pub(super) fn unknown_command(&mut self, key: usize, args: &Args) {
        let mut m = b"ERR unknown command '".to_vec();
        m.extend_from_slice(c_str(args.get(0).unwrap_or_default(), 128));
        m.extend_from_slice(b"', with args beginning with: ");
        let mut rest = Vec::new();
        for a in args.iter().skip(1) {
            if rest.len() >= 128 {
                break;
            }
            let room = 128 - rest.len();
            rest.push(b'\'');
            rest.extend_from_slice(c_str(a, room));
            rest.extend_from_slice(b"' ");
        }
        m.extend_from_slice(&rest);
        self.reply_error_bytes(key, &m);
    }
}
