// One BitTorrent peer connection over libuv TCP, plain or TLS (DESIGN §5).
//
// The connection frames the wire protocol (wire.hpp) and reports to its
// handler: the engine while an incoming connection has not said which
// torrent it wants, then the Torrent.  It does no policy of its own.
//
// TLS: an outgoing connection made with a TlsContext speaks TLS 1.2 first;
// an incoming one is TLS when its first byte is 0x16 (a TLS record) and
// plain BitTorrent when it is 0x13.  On a TLS connection the peer id in the
// BitTorrent handshake must be the one derived from the certificate's key
// (identity.hpp), or the connection closes.
//
// Lifetime: created with new by connect()/accept(); deletes itself after
// its socket has closed.  close() calls the handler's on_closed once, at
// once; the handler must forget the pointer then.  Loop thread only.
#pragma once

#include "transport/bitfield.hpp"
#include "transport/magnet.hpp"
#include "transport/peer_address.hpp"
#include "transport/wire.hpp"

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace openace::net {
class TlsContext;
class TlsSession;
} // namespace openace::net

namespace openace::transport {

class PeerConnection;

class PeerHandler {
public:
    virtual ~PeerHandler() = default;
    // The peer's BitTorrent handshake arrived (peer_id(), info_hash() set;
    // on TLS already checked against the certificate).  An incoming
    // connection's handler answers with send_handshake() or closes it.
    virtual void on_handshake(PeerConnection &c) = 0;
    virtual void on_message(PeerConnection &c, const wire::Message &m) = 0;
    // Written data drained below kLowWater: room to send more.
    virtual void on_writable(PeerConnection & /*c*/) {}
    // Last call for this connection.  `before_handshake`: the connection
    // (or its TLS handshake) failed before the BitTorrent handshake.
    virtual void on_closed(PeerConnection &c, const std::string &reason, bool before_handshake) = 0;
};

class PeerConnection {
public:
    using clock = std::chrono::steady_clock;
    static constexpr std::size_t kLowWater = 512 * 1024;

    // Outgoing: connects to `addr`, then (after TLS when `tls` is set) sends
    // our handshake for `info_hash`.  Never null; a connect error arrives as
    // on_closed.
    static PeerConnection *connect(uv_loop_t *loop, const PeerAddress &addr, const InfoHash &info_hash,
                                   const PeerId &our_id, net::TlsContext *tls, PeerHandler *handler);
    // Incoming: takes over `client` (an accepted, initialized uv_tcp_t
    // allocated with new).  `tls` may be null (TLS peers are then refused).
    static PeerConnection *accept(uv_loop_t *loop, uv_tcp_t *client, net::TlsContext *tls, PeerHandler *handler);

    PeerConnection(const PeerConnection &) = delete;
    PeerConnection &operator=(const PeerConnection &) = delete;

    void set_handler(PeerHandler *h) noexcept { handler_ = h; }
    // Incoming connections: our answer to the peer's handshake.
    void send_handshake(const PeerId &our_id);

    void send(const wire::Message &m);
    // A piece message without copying `data` on plain connections.
    void send_piece(std::uint32_t index, std::uint32_t begin, std::string data);
    void send_extended(std::uint8_t ext_id, std::string_view payload);
    // Idempotent; calls the handler's on_closed (once) before returning.
    void close(const std::string &reason);

    // The largest message length accepted from the peer (default
    // wire::kMaxMessageLength; live swarms raise it to carry whole pieces).
    void set_max_message_length(std::uint32_t n) noexcept { max_message_ = n; }

    // Stops/starts reading from the socket (download rate limit).
    void pause_reading();
    void resume_reading();

    bool closing() const noexcept { return closing_; }
    bool outgoing() const noexcept { return outgoing_; }
    bool is_tls() const noexcept { return tls_ != nullptr; }
    bool handshake_done() const noexcept { return got_handshake_; }
    const PeerAddress &address() const noexcept { return addr_; }
    const PeerId &peer_id() const noexcept { return peer_id_; }
    const InfoHash &info_hash() const noexcept { return info_hash_; }
    bool peer_supports_extensions() const noexcept { return peer_ext_; }
    bool peer_supports_fast() const noexcept { return peer_fast_; }
    // Bytes handed to libuv and not yet written.
    std::size_t queued_bytes() const noexcept { return queued_; }
    clock::time_point created() const noexcept { return created_; }
    clock::time_point last_received() const noexcept { return last_received_; }
    clock::time_point last_sent() const noexcept { return last_sent_; }
    std::uint64_t bytes_received() const noexcept { return bytes_in_; }
    std::uint64_t bytes_sent() const noexcept { return bytes_out_; }
    // Heap bytes held by this connection (for the 16 KB/connection goal).
    std::size_t memory_bytes() const noexcept;

    // Per-connection state kept for the Torrent (it owns their meaning).
    struct State {
        bool am_choking = true, am_interested = false;
        bool peer_choking = true, peer_interested = false;
        bool have_all = false, have_none = false;
        Bitfield have;              // the peer's pieces (sized once metadata is known)
        std::string early_bitfield; // a bitfield that came before we knew the piece count
        wire::ExtHandshake ext;     // the peer's extension handshake
        bool got_ext = false;
        std::uint64_t key = 0;      // the Torrent's id for this connection
        double down_rate = 0, up_rate = 0;   // payload bytes/s, smoothed
        std::uint64_t down_payload = 0, up_payload = 0, down_mark = 0, up_mark = 0;
        int pending_uploads = 0;
        clock::time_point last_piece{};
        clock::time_point interest_changed{};
    } state;

private:
    PeerConnection(uv_loop_t *loop, PeerHandler *handler);
    ~PeerConnection();

    struct WriteReq;
    static void on_connect(uv_connect_t *req, int status);
    static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
    static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);
    static void on_write(uv_write_t *req, int status);

    void connected();
    void start_tls(bool server);
    void received(std::string_view bytes);       // from the socket
    void received_plain(std::string_view bytes); // after TLS
    // Parses what it can from `data`; returns the bytes it used.
    std::size_t parse(std::string_view data);
    void handshake_received(std::string_view raw);
    std::string our_handshake() const;
    void write_raw(std::string a, std::string b = {});
    void flush();
    void queue_plain(std::string_view bytes);

    uv_loop_t *loop_;
    uv_tcp_t *tcp_ = nullptr;
    PeerHandler *handler_;
    std::unique_ptr<net::TlsSession> tls_;
    net::TlsContext *tls_ctx_ = nullptr;
    PeerAddress addr_;
    InfoHash info_hash_{};
    PeerId our_id_{}, peer_id_{};
    bool outgoing_ = false, closing_ = false, got_handshake_ = false, sent_handshake_ = false;
    bool sniffing_ = false; // incoming: first byte decides TLS or plain
    bool peer_ext_ = false, peer_fast_ = false;
    bool reading_ = false, in_read_ = false;
    std::string in_;  // unparsed plaintext
    std::string out_; // plaintext waiting for flush()
    std::size_t queued_ = 0;
    std::uint32_t max_message_ = wire::kMaxMessageLength;
    std::uint64_t bytes_in_ = 0, bytes_out_ = 0;
    clock::time_point created_ = clock::now(), last_received_ = created_, last_sent_ = created_;
};

} // namespace openace::transport
