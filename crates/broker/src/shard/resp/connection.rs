//! Connection commands: PING, ECHO, QUIT, RESET, HELLO, CLIENT, AUTH, SELECT.

use bytes::Bytes;
use corecast_proto::resp::{encode, string2ll, Args};

use super::super::Shard;
use super::errors::{c_str, lower};
use crate::config::limits::MAX_CLIENT_NAME_BYTES;
use crate::conn::Life;
use crate::delivery::Format;

/// The databases Redis has by default (`databases 16`). Pub/sub ignores the selected
/// database in Redis, so SELECT only has to accept what Redis accepts.
const DATABASES: i64 = 16;

impl Shard {
    pub(super) fn cmd_ping(&mut self, key: usize, args: &Args) {
        if args.len() > 2 {
            self.arity_error(key, "ping");
            return;
        }
        let arg = args.get(1);
        if self.resp_mut(key).subscribed() && !self.resp3(key) {
            self.reply_with(key, |b| encode::pong_subscribed(b, arg));
        } else if let Some(a) = arg {
            self.reply_with(key, |b| encode::bulk(b, a));
        } else {
            self.reply(key, b"+PONG\r\n");
        }
    }

    pub(super) fn cmd_echo(&mut self, key: usize, args: &Args) {
        let msg = args.get(1).unwrap_or_default();
        self.reply_with(key, |b| encode::bulk(b, msg));
    }

    pub(super) fn cmd_quit(&mut self, key: usize, _args: &Args) {
        self.reply(key, b"+OK\r\n");
        self.conns[key].life = Life::CloseAfterFlush;
    }

    pub(super) fn cmd_reset(&mut self, key: usize, _args: &Args) {
        self.drop_subscriptions(key);
        self.resp_mut(key).name = None;
        self.conns[key].format = Format::Resp2;
        self.reply(key, b"+RESET\r\n");
    }

    /// HELLO [protover [AUTH username password] [SETNAME name]]. Options take effect one by
    /// one as Redis 7.0 applies them: a name set before a bad option stays set.
    pub(super) fn cmd_hello(&mut self, key: usize, args: &Args) {
        let mut switch_to = None;
        if let Some(v) = args.get(1) {
            let resp3 = match string2ll(v) {
                Some(2) => false,
                Some(3) => true,
                Some(_) => {
                    self.reply_error(key, "NOPROTO unsupported protocol version");
                    return;
                }
                None => {
                    self.reply_error(
                        key,
                        "ERR Protocol version is not an integer or out of range",
                    );
                    return;
                }
            };
            switch_to = Some(resp3);
        }
        let mut i = 2;
        while i < args.len() {
            let opt = args.get(i).unwrap_or_default();
            let more = args.len() - 1 - i;
            if opt.eq_ignore_ascii_case(b"auth") && more >= 2 {
                if !default_user_accepts(args.get(i + 1).unwrap_or_default()) {
                    self.reply(key, WRONGPASS);
                    return;
                }
                i += 3;
            } else if opt.eq_ignore_ascii_case(b"setname") && more >= 1 {
                if !self.set_client_name(key, args.get(i + 1).unwrap_or_default()) {
                    return;
                }
                i += 2;
            } else {
                let mut m = b"ERR Syntax error in HELLO option '".to_vec();
                m.extend_from_slice(c_str(opt, usize::MAX));
                m.push(b'\'');
                self.reply_error_bytes(key, &m);
                return;
            }
        }
        // As Redis: the protocol switches once every option has been applied.
        if let Some(resp3) = switch_to {
            self.conns[key].format = if resp3 { Format::Resp3 } else { Format::Resp2 };
        }
        let id = self.resp_mut(key).client_id as i64;
        let resp3 = self.resp3(key);
        self.reply_with(key, |b| {
            if resp3 {
                encode::map_header(b, 7);
            } else {
                encode::array_header(b, 14);
            }
            encode::bulk(b, b"server");
            encode::bulk(b, b"corecast");
            encode::bulk(b, b"version");
            encode::bulk(b, b"7.0.0");
            encode::bulk(b, b"proto");
            encode::integer(b, if resp3 { 3 } else { 2 });
            encode::bulk(b, b"id");
            encode::integer(b, id);
            encode::bulk(b, b"mode");
            encode::bulk(b, b"standalone");
            encode::bulk(b, b"role");
            encode::bulk(b, b"master");
            encode::bulk(b, b"modules");
            encode::array_header(b, 0);
        });
    }

    /// Sets (or, with an empty name, clears) the client name as CLIENT SETNAME and HELLO
    /// SETNAME do; a name Redis would refuse gets its error and false.
    fn set_client_name(&mut self, key: usize, name: &[u8]) -> bool {
        if !valid_client_name(name) {
            self.reply_error(
                key,
                "ERR Client names cannot contain spaces, newlines or special characters.",
            );
            return false;
        }
        if name.len() > MAX_CLIENT_NAME_BYTES {
            self.reply_error(
                key,
                &format!("ERR client name too long (max {MAX_CLIENT_NAME_BYTES} bytes)"),
            );
            return false;
        }
        self.resp_mut(key).name =
            (!name.is_empty()).then(|| Box::new(Bytes::copy_from_slice(name)));
        true
    }

    pub(super) fn cmd_client(&mut self, key: usize, args: &Args) {
        let sub = lower(args.get(1).unwrap_or_default());
        match (sub.as_str(), args.len()) {
            ("setname", 3) => {
                if self.set_client_name(key, args.get(2).unwrap_or_default()) {
                    self.reply(key, b"+OK\r\n");
                }
            }
            ("getname", 2) => match self.resp_mut(key).name.clone() {
                Some(n) => self.reply_with(key, |b| encode::bulk(b, &n)),
                None => {
                    let resp3 = self.resp3(key);
                    self.reply_with(key, |b| encode::null(b, resp3));
                }
            },
            ("setinfo", 4) => {
                let attr = lower(args.get(2).unwrap_or_default());
                if attr == "lib-name" || attr == "lib-ver" {
                    self.reply(key, b"+OK\r\n");
                } else {
                    let raw = String::from_utf8_lossy(args.get(2).unwrap_or_default()).into_owned();
                    self.reply_error(key, &format!("ERR Unrecognized option '{raw}'"));
                }
            }
            ("id", 2) => {
                let id = self.resp_mut(key).client_id as i64;
                self.reply_with(key, |b| encode::integer(b, id));
            }
            // Redis has these; corecast does not (resp_exec checked the arity already).
            _ => self.unknown_subcommand(key, "client", args.get(1).unwrap_or_default()),
        }
    }

    /// AUTH as Redis answers it with no password configured: the one-argument form is an
    /// error saying so, and the default user accepts any password. A client configured with
    /// a password hears clearly that this broker has none.
    pub(super) fn cmd_auth(&mut self, key: usize, args: &Args) {
        match args.len() {
            2 => self.reply_error(
                key,
                "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            ),
            3 if default_user_accepts(args.get(1).unwrap_or_default()) => {
                self.reply(key, b"+OK\r\n")
            }
            3 => self.reply(key, WRONGPASS),
            _ => self.reply_error(key, "ERR syntax error"),
        }
    }

    /// SELECT: Redis's pub/sub ignores the database, so clients that select one (node-redis's
    /// `database` option) work unchanged; indexes outside Redis's default 16 fail as there.
    pub(super) fn cmd_select(&mut self, key: usize, args: &Args) {
        match string2ll(args.get(1).unwrap_or_default()) {
            Some(db) if (0..DATABASES).contains(&db) => self.reply(key, b"+OK\r\n"),
            Some(db) if i32::try_from(db).is_ok() => {
                self.reply_error(key, "ERR DB index is out of range")
            }
            Some(_) => self.reply_error(
                key,
                "ERR value is out of range, value must between -2147483648 and 2147483647",
            ),
            None => self.reply_error(key, "ERR value is not an integer or out of range"),
        }
    }
}

/// Redis's reply to credentials the default user (no password set) does not take.
const WRONGPASS: &[u8] = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";

/// With no password configured, Redis's only user is `default`, and it takes any password.
fn default_user_accepts(user: &[u8]) -> bool {
    user == b"default"
}

/// Redis allows printable ASCII without spaces in client names.
fn valid_client_name(name: &[u8]) -> bool {
    name.iter().all(|&c| (b'!'..=b'~').contains(&c))
}
