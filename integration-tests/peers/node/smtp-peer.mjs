// SMTP test peer for mailgate's integration tests, built on Nodemailer's
// `smtp-server`: a real SMTP server that nobody on this project wrote.
//
// Usage: node smtp-peer.mjs '<json config>'
//
// Config (every field optional):
//   host               address to bind (default "127.0.0.1")
//   port               port to bind (default 0 = ephemeral)
//   secure             implicit TLS from the first byte
//   key, cert          PEM file paths of the server's TLS key and certificate
//   starttls           offer STARTTLS (default false: not advertised, command disabled)
//   requireStarttls    refuse MAIL before STARTTLS with 530
//   authMethods        e.g. ["PLAIN","LOGIN","XOAUTH2"]; empty/absent = no AUTH at all (open relay)
//   authOptional       with authMethods: AUTH is offered but not required
//   allowInsecureAuth  allow AUTH before STARTTLS when STARTTLS is offered
//   users              {user: password} for PLAIN, LOGIN (and CRAM-MD5)
//   tokens             {user: [accepted access tokens]} for XOAUTH2
//   scope              scope named in the XOAUTH2 error challenge
//   refuseFirstAuth    refuse the first n otherwise-valid AUTH attempts (whole server)
//   failMail, failRcpt, failData   reply code for every MAIL / RCPT / end of DATA
//   failRcptFor        {address: code}: refuse RCPT TO of these addresses only
//   watchStdin         exit when stdin closes (the Rust harness sets it, so a
//                      peer never outlives its test process)
//
// Output on stdout, one line each: first `LISTENING <port>`, then one JSON
// object per event (a message's `to` lists every accepted RCPT TO in order,
// repeats included; smtp-server shows international domains as U-labels):
//   {"event":"connect","conn":1,"secure":false}
//   {"event":"tls","conn":1}                       (STARTTLS or implicit TLS done)
//   {"event":"auth","conn":1,"method":"PLAIN","user":"u","ok":true,"reason":null}
//   {"event":"message","conn":1,"from":"a@x","to":["b@y"],"secure":true,
//    "user":"u","method":"PLAIN","mail_options":["BODY=8BITMIME","SIZE=123"],
//    "data":"<full message text>","raw":"<base64>"}
//     data: the message as UTF-8 text (lossy for 8-bit or invalid bytes);
//     raw: base64 of the DATA content exactly as received (after the server's
//     dot-unstuffing, without the terminating `.` line);
//     mail_options: the MAIL FROM parameters, upper-case keys, `KEY=value` or `KEY`.
//   {"event":"close","conn":1}
//   {"event":"error","conn":null,"message":"..."}
// Passwords and tokens are never printed. Diagnostics go to stderr.

import fs from 'node:fs';
import { SMTPServer } from 'smtp-server';

const SUPPORTED_AUTH = ['PLAIN', 'LOGIN', 'XOAUTH2', 'CRAM-MD5'];

function fail(message) {
    process.stderr.write(`smtp-peer: ${message}\n`);
    process.exit(2);
}

let cfg;
try {
    cfg = JSON.parse(process.argv[2] || '{}');
} catch (err) {
    fail(`config is not JSON: ${err.message}`);
}

const authMethods = (cfg.authMethods || []).map(m => String(m).toUpperCase());
for (const m of authMethods) {
    if (!SUPPORTED_AUTH.includes(m)) {
        fail(`smtp-server does not implement AUTH ${m} (supported: ${SUPPORTED_AUTH.join(', ')})`);
    }
}
const noAuth = authMethods.length === 0;
const users = cfg.users || {};
const tokens = cfg.tokens || {};
let refusalsLeft = Number(cfg.refuseFirstAuth || 0);

function emit(event) {
    process.stdout.write(JSON.stringify(event) + '\n');
}

function smtpError(code, message) {
    const err = new Error(message);
    err.responseCode = code;
    return err;
}

// session.id -> { conn, method }
const conns = new Map();
let nextConn = 1;
const connOf = session => (conns.get(session.id) || {}).conn ?? null;

const disabledCommands = [];
if (noAuth) {
    disabledCommands.push('AUTH');
}
if (!cfg.starttls && !cfg.secure) {
    disabledCommands.push('STARTTLS');
}

const options = {
    secure: !!cfg.secure,
    hideSTARTTLS: !cfg.starttls,
    hide8BITMIME: !!cfg.hide8bitmime,
    hideSMTPUTF8: !!cfg.hideSmtputf8,
    disabledCommands,
    authMethods: noAuth ? ['PLAIN'] : authMethods,
    authOptional: noAuth || !!cfg.authOptional,
    allowInsecureAuth: !!cfg.allowInsecureAuth,
    disableReverseLookup: true,
    // Idle clients are disconnected after this long (for pool tests).
    socketTimeout: cfg.socketTimeoutMs || 60 * 1000,
    logger: false,

    onConnect(session, callback) {
        const conn = nextConn++;
        conns.set(session.id, { conn, method: null });
        emit({ event: 'connect', conn, secure: !!session.secure });
        callback();
    },

    onSecure(_socket, session, callback) {
        emit({ event: 'tls', conn: connOf(session) });
        callback();
    },

    onAuth(auth, session, callback) {
        const method = auth.method;
        const user = auth.username ?? null;
        let ok;
        switch (method) {
            case 'PLAIN':
            case 'LOGIN':
                ok = Object.hasOwn(users, user) && users[user] === auth.password;
                break;
            case 'CRAM-MD5':
                ok = Object.hasOwn(users, user) && auth.validatePassword(users[user]);
                break;
            case 'XOAUTH2':
                ok = Object.hasOwn(tokens, user) && [].concat(tokens[user]).includes(auth.accessToken);
                break;
            default:
                ok = false;
        }
        let reason = ok ? null : 'invalid';
        if (ok && refusalsLeft > 0) {
            refusalsLeft -= 1;
            ok = false;
            reason = 'refuseFirstAuth';
        }
        emit({ event: 'auth', conn: connOf(session), method, user, ok, reason });
        if (ok) {
            const state = conns.get(session.id);
            if (state) {
                state.method = method;
            }
            return callback(null, { user });
        }
        if (method === 'XOAUTH2') {
            // smtp-server sends this as the RFC 334 error challenge, waits for
            // the client's empty line, then replies 535.
            return callback(null, {
                data: { status: '401', schemes: 'bearer', scope: cfg.scope || 'https://mail.example.test/.default' }
            });
        }
        return callback(null, { responseCode: 535, message: 'Authentication credentials invalid' });
    },

    onMailFrom(_address, session, callback) {
        if (cfg.requireStarttls && !session.secure) {
            return callback(smtpError(530, 'Must issue a STARTTLS command first'));
        }
        if (cfg.failMail) {
            return callback(smtpError(Number(cfg.failMail), 'MAIL refused by test peer (failMail)'));
        }
        const state = conns.get(session.id);
        if (state) {
            state.rcpts = [];
        }
        callback();
    },

    onRcptTo(address, session, callback) {
        if (cfg.failRcpt) {
            return callback(smtpError(Number(cfg.failRcpt), 'RCPT refused by test peer (failRcpt)'));
        }
        const code = (cfg.failRcptFor || {})[address.address];
        if (code) {
            return callback(smtpError(Number(code), `RCPT refused by test peer for ${address.address} (failRcptFor)`));
        }
        // Every accepted RCPT TO, in order, as the Python peer records them
        // (smtp-server's own envelope merges repeats of an address).
        const state = conns.get(session.id);
        if (state && state.rcpts) {
            state.rcpts.push(address.address);
        }
        callback();
    },

    onData(stream, session, callback) {
        const chunks = [];
        stream.on('data', chunk => chunks.push(chunk));
        stream.on('error', err => callback(err));
        stream.on('end', () => {
            if (cfg.failData) {
                return callback(smtpError(Number(cfg.failData), 'message refused by test peer (failData)'));
            }
            const state = conns.get(session.id) || {};
            const envelope = session.envelope || {};
            const content = Buffer.concat(chunks);
            const mailArgs = (envelope.mailFrom && envelope.mailFrom.args) || {};
            const rcpts = state.rcpts;
            state.rcpts = null;
            emit({
                event: 'message',
                conn: state.conn ?? null,
                from: envelope.mailFrom ? envelope.mailFrom.address : null,
                to: rcpts || (envelope.rcptTo || []).map(r => r.address),
                secure: !!session.secure,
                user: session.user ?? null,
                method: session.user ? (state.method ?? null) : null,
                mail_options: Object.entries(mailArgs).map(([k, v]) => (v === true ? k : `${k}=${v}`)),
                data: content.toString('utf8'),
                raw: content.toString('base64')
            });
            callback(null, 'Message accepted');
        });
    },

    onClose(session) {
        const state = conns.get(session.id);
        if (state) {
            conns.delete(session.id);
            emit({ event: 'close', conn: state.conn });
        }
    }
};

try {
    if (cfg.key) {
        options.key = fs.readFileSync(cfg.key);
    }
    if (cfg.cert) {
        options.cert = fs.readFileSync(cfg.cert);
    }
} catch (err) {
    fail(`cannot read TLS key/cert: ${err.message}`);
}

const server = new SMTPServer(options);
server.on('error', err => {
    process.stderr.write(`smtp-peer: ${err.code || ''} ${err.message}\n`);
    emit({ event: 'error', conn: null, message: String(err.message) });
});

for (const signal of ['SIGTERM', 'SIGINT']) {
    process.on(signal, () => process.exit(0));
}
if (cfg.watchStdin) {
    process.stdin.on('end', () => process.exit(0));
    process.stdin.on('error', () => process.exit(0));
    process.stdin.resume();
}

const onListenError = err => fail(`cannot listen: ${err.message}`);
server.server.once('error', onListenError);
server.listen(Number(cfg.port || 0), cfg.host || '127.0.0.1', () => {
    server.server.removeListener('error', onListenError);
    process.stdout.write(`LISTENING ${server.server.address().port}\n`);
});
