// TLS 1.2 between OpenAce peers (mbedTLS), over memory buffers (DESIGN §5).
//
// OpenAce peers speak TLS on the same port as plain BitTorrent; the listener
// tells them apart by the first byte (0x16 starts a TLS record, 0x13 the
// BitTorrent handshake).  These classes know nothing about sockets: the
// owner moves bytes between its stream and the session —
//
//   session.on_ciphertext = [&](std::string_view b) { socket.write(b); };
//   session.on_plaintext  = [&](std::string_view b) { wire.parse(b); };
//   socket.on_read = [&](std::string_view b) { if (!session.feed(b)) close(); };
//   session.start();
//
// Security model: both sides present a certificate (mutual TLS).  The
// certificates are self-signed, so the TLS layer accepts any certificate
// whose key the peer proves it holds; who the peer is gets checked by the
// caller, which compares transport::peer_id_for_key(peer_public_key_der())
// with the peer id it announced and closes the connection on a mismatch.
// Only TLS 1.2 with ECDHE-ECDSA is offered: CHACHA20-POLY1305 first (the
// fastest on these machines, so the cipher never limits a transfer), then
// AES-128-GCM.  Renegotiation is refused.
//
// Bounds: records larger than TLS allows fail at once (mbedTLS); each
// feed() is decrypted before it returns, so no ciphertext beyond a partial
// record waits inside (more than 1 MiB would fail the session); a handshake
// that takes more than 64 KiB of input fails; at most 1 MiB of plaintext
// waits to be sent (written before the handshake completes, or from a
// callback during a write).  A peer that goes silent is the owner's
// business: it must run a handshake timeout.
//
// Threading: a TlsContext may be created on any thread, then it and all its
// sessions are used on one thread (the engine's loop).  Every callback runs
// on that thread, from inside start(), feed(), write() or close_notify().
//
// Re-entrancy: callbacks are only called when mbedTLS is not running, and
// only by the outermost call on a session; a callback may call feed(),
// write() or close_notify() on the same session (their output joins the
// queue being delivered, in order) or destroy the session (nothing of it is
// touched afterwards).  Callbacks must not throw.
#pragma once

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace openace::net {

// One per engine: our certificate and key, the random generator and the
// TLS settings for both directions.  Not copyable or movable (sessions
// point into it); it must outlive its sessions.
class TlsContext {
public:
    // PEM texts (as in transport::Identity).  Throws openace::Error(INVAL,
    // "tls", "config", "certificate: ...") / "private key: ..." / "the
    // certificate does not match the key" / "private key: not an ECDSA key".
    TlsContext(const std::string &cert_pem, const std::string &key_pem);
    ~TlsContext();
    TlsContext(const TlsContext &) = delete;
    TlsContext &operator=(const TlsContext &) = delete;

private:
    friend class TlsSession;
    void setup(const std::string &cert_pem, const std::string &key_pem);
    void setup_config(mbedtls_ssl_config &conf, int endpoint);
    void release();

    mbedtls_entropy_context entropy_;
    mbedtls_ctr_drbg_context drbg_;
    mbedtls_x509_crt cert_;
    mbedtls_pk_context key_;
    mbedtls_ssl_config server_conf_;
    mbedtls_ssl_config client_conf_;
};

// One TLS connection.  Not copyable or movable (mbedTLS holds `this`).
class TlsSession {
public:
    static constexpr std::size_t kMaxBufferedCiphertext = 1 << 20;
    static constexpr std::size_t kMaxHandshakeBytes = 64 * 1024;
    static constexpr std::size_t kMaxQueuedPlaintext = 1 << 20;

    // ctx must outlive the session.  server: this side accepted the
    // connection.  Throws Error(NOMEM, "tls", "session", ...) when mbedTLS
    // cannot allocate its record buffers.
    TlsSession(TlsContext &ctx, bool server);
    ~TlsSession();
    TlsSession(const TlsSession &) = delete;
    TlsSession &operator=(const TlsSession &) = delete;

    // Set before start().  The views are valid during the call only.
    std::function<void(std::string_view)> on_ciphertext; // bytes to send to the peer, in order
    std::function<void(std::string_view)> on_plaintext;  // bytes the peer wrote, in order
    std::function<void()> on_handshake_done;             // once; before any on_plaintext

    // Client: sends the ClientHello through on_ciphertext.  Server: nothing
    // to do (it waits for the ClientHello), harmless to call.
    void start();
    // Bytes from the socket, any chunking.  Drives the handshake and
    // decrypts.  Returns false once the session has failed (see error()),
    // true otherwise — also when a callback destroyed the session.  After
    // the peer's close_notify further bytes are ignored (peer_closed()).
    bool feed(std::string_view ciphertext);
    // Encrypts into records of up to 16 KiB, handed to on_ciphertext in
    // pieces of about 64 KiB.  Before the handshake completes the bytes are
    // queued and sent right after it, before on_handshake_done; a write from
    // a callback of a write in progress is queued behind it.  The queue holds
    // up to kMaxQueuedPlaintext.  Returns false when the session has failed,
    // after close_notify(), or when the queue would overflow (which fails
    // the session); true also when a callback destroyed the session.
    bool write(std::string_view plaintext);
    // Sends the close_notify alert; later writes return false.  Before the
    // handshake completes it only drops what was queued.
    void close_notify();

    bool handshake_done() const noexcept { return handshake_done_; }
    bool failed() const noexcept { return failed_; }
    // True once the peer's close_notify arrived.
    bool peer_closed() const noexcept { return peer_closed_; }
    // "tls: handshake failed: <mbedTLS text> (-0x7780)", "tls: receive
    // failed: ...", ...; empty while not failed.
    const std::string &error() const noexcept { return error_; }
    // SubjectPublicKeyInfo DER of the peer's certificate key after the
    // handshake; empty before.
    std::string peer_public_key_der() const { return peer_key_der_; }
    // "TLS-ECDHE-ECDSA-WITH-CHACHA20-POLY1305-SHA256" after the handshake;
    // empty before.
    std::string cipher_suite() const;

private:
    static int bio_send(void *self, const unsigned char *buf, std::size_t len);
    static int bio_recv(void *self, unsigned char *buf, std::size_t len);
    void keep_unread_input();
    bool hand_out(std::string &buf, const std::function<void(std::string_view)> &cb,
                  const std::shared_ptr<bool> &alive);
    void process();
    bool handshake();
    void read_records();
    std::size_t unread() const;
    bool queue(std::string_view plaintext);
    void encrypt(std::string_view plaintext);
    void fail(std::string message);
    bool deliver();

    mbedtls_ssl_context ssl_;
    std::string_view input_;   // what feed() is handing to mbedTLS
    std::string in_;           // ciphertext from earlier feed() calls not yet read by mbedTLS
    std::size_t in_pos_ = 0;   // in_[0, in_pos_) was read
    std::string out_;          // ciphertext waiting for on_ciphertext
    std::string plain_;        // plaintext waiting for on_plaintext
    std::string queued_;       // written before the handshake completed, or during a write()
    std::string peer_key_der_;
    std::string error_;
    std::size_t handshake_bytes_ = 0;
    bool handshake_done_ = false;
    bool done_pending_ = false; // on_handshake_done not yet called
    bool failed_ = false;
    bool closed_ = false;       // close_notify() was called
    bool peer_closed_ = false;
    bool delivering_ = false;   // an outer call is running callbacks
    bool writing_ = false;      // an outer write() is sending in steps
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

} // namespace openace::net
