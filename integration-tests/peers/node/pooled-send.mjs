// Pooled Nodemailer sender, the comparison point for mailgate's pooled
// sending benchmark: how fast does Nodemailer's own SMTP pool push the same
// messages to the same server?
//
// Usage: node pooled-send.mjs '<json config>'
//
// Config:
//   host          SMTP server address (required)
//   port          SMTP server port (required)
//   connections   pool size, and how many sends are kept in flight (default 1)
//   messages      how many messages to send (default 1)
//   from, to      envelope and header addresses (`to`: a string or an array)
//   subject, text the message
//   noDelay       set TCP_NODELAY on the pool's sockets (default false:
//                 Nodemailer as shipped, which leaves Nagle on; its small
//                 writes at the end of DATA then wait for the server's
//                 delayed ACK, about 40 ms per message on Linux loopback)
//
// Plain SMTP only (secure: false, ignoreTLS: true: STARTTLS is not used even
// when offered), no AUTH, connections reused for any number of messages
// (maxMessages: Infinity).
//
// Output on stdout, one JSON line once every send has finished:
//   {"messages":N,"seconds":S,"errors":E}
// N: messages the server accepted; E: sends that failed (N + E = the
// messages asked for); S: wall time from the first send to the last reply,
// pool connection setup included. The first few errors go to stderr. Exit
// status 0 when the run took place (errors or not), 2 for a bad config.

import net from 'node:net';
import nodemailer from 'nodemailer';

function fail(message) {
    process.stderr.write(`pooled-send: ${message}\n`);
    process.exit(2);
}

let cfg;
try {
    cfg = JSON.parse(process.argv[2] || '{}');
} catch (err) {
    fail(`config is not JSON: ${err.message}`);
}

const host = cfg.host;
const port = Number(cfg.port);
const connections = Number(cfg.connections ?? 1);
const messages = Number(cfg.messages ?? 1);
if (typeof host !== 'string' || host === '') {
    fail('host is required');
}
if (!Number.isInteger(port) || port < 1 || port > 65535) {
    fail(`bad port ${JSON.stringify(cfg.port)}`);
}
if (!Number.isInteger(connections) || connections < 1) {
    fail(`bad connections ${JSON.stringify(cfg.connections)}`);
}
if (!Number.isInteger(messages) || messages < 0) {
    fail(`bad messages ${JSON.stringify(cfg.messages)}`);
}

// Nodemailer's documented hook for supplying the socket (meant for
// proxies): an open connection, with Nagle off.
function noDelaySocket(_options, callback) {
    let done = false;
    const socket = net.connect({ host, port });
    socket.setNoDelay(true);
    socket.once('connect', () => {
        if (!done) {
            done = true;
            callback(null, { connection: socket });
        }
    });
    socket.once('error', err => {
        if (!done) {
            done = true;
            callback(err);
        }
    });
}

const transporter = nodemailer.createTransport({
    host,
    port,
    secure: false,
    ignoreTLS: true,
    pool: true,
    maxConnections: connections,
    maxMessages: Infinity,
    logger: false,
    ...(cfg.noDelay ? { getSocket: noDelaySocket } : {})
});

const mail = {
    from: cfg.from ?? 'bench@example.com',
    to: cfg.to ?? 'sink@example.com',
    subject: cfg.subject ?? 'pooled-send',
    text: cfg.text ?? 'pooled-send\n'
};

const MAX_REPORTED_ERRORS = 5;
let next = 0;
let sent = 0;
let errors = 0;

// One worker per connection, each with one send in flight: `connections`
// sends outstanding until the last ones.
async function worker() {
    while (next < messages) {
        next += 1;
        try {
            await transporter.sendMail(mail);
            sent += 1;
        } catch (err) {
            errors += 1;
            if (errors <= MAX_REPORTED_ERRORS) {
                process.stderr.write(`pooled-send: send failed: ${err.message}\n`);
            }
        }
    }
}

const start = process.hrtime.bigint();
await Promise.all(Array.from({ length: Math.min(connections, Math.max(messages, 1)) }, worker));
const seconds = Number(process.hrtime.bigint() - start) / 1e9;
transporter.close();

process.stdout.write(JSON.stringify({ messages: sent, seconds, errors }) + '\n');
