#include "transport/peer_connection.hpp"

#include "core/error.hpp"
#include "net/tls.hpp"
#include "net/uv_handle.hpp"
#include "transport/identity.hpp"

#include <arpa/inet.h>

#include <cstring>

namespace openace::transport {

namespace {

// One read buffer for every connection of the loop: libuv hands it back in
// the read callback that follows the allocation, and whatever a parse leaves
// over is copied into the connection's own buffer.  Keeps idle connections
// small (DESIGN: < 16 KB each).
thread_local char g_read_buf[256 * 1024];

PeerAddress address_of(const sockaddr_storage &ss)
{
    char text[INET6_ADDRSTRLEN] = {};
    if (ss.ss_family == AF_INET6) {
        auto *a = reinterpret_cast<const sockaddr_in6 *>(&ss);
        inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof text);
        return {text, ntohs(a->sin6_port)};
    }
    auto *a = reinterpret_cast<const sockaddr_in *>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, text, sizeof text);
    return {text, ntohs(a->sin_port)};
}

} // namespace

struct PeerConnection::WriteReq {
    uv_write_t req{};
    std::string a, b;
    PeerConnection *self = nullptr;
    std::size_t size() const { return a.size() + b.size(); }
};

PeerConnection::PeerConnection(uv_loop_t *loop, PeerHandler *handler) : loop_(loop), handler_(handler) {}

PeerConnection::~PeerConnection() = default;

PeerConnection *PeerConnection::connect(uv_loop_t *loop, const PeerAddress &addr, const InfoHash &info_hash,
                                        const PeerId &our_id, net::TlsContext *tls, PeerHandler *handler)
{
    auto *c = new PeerConnection(loop, handler);
    c->outgoing_ = true;
    c->addr_ = addr;
    c->info_hash_ = info_hash;
    c->our_id_ = our_id;
    c->tls_ctx_ = tls;
    c->tcp_ = new uv_tcp_t{};
    uv_tcp_init(loop, c->tcp_);
    c->tcp_->data = c;

    sockaddr_storage ss{};
    int rc = uv_ip4_addr(addr.ip.c_str(), addr.port, reinterpret_cast<sockaddr_in *>(&ss));
    if (rc != 0)
        rc = uv_ip6_addr(addr.ip.c_str(), addr.port, reinterpret_cast<sockaddr_in6 *>(&ss));
    auto *req = new uv_connect_t{};
    req->data = c;
    if (rc == 0)
        rc = uv_tcp_connect(req, c->tcp_, reinterpret_cast<const sockaddr *>(&ss), on_connect);
    if (rc != 0) {
        delete req;
        // on_closed runs now, before the caller has the pointer: callers
        // check closing() on what connect() returns.
        c->close("connect " + addr.to_string() + ": " + uv_strerror(rc));
    }
    return c;
}

PeerConnection *PeerConnection::accept(uv_loop_t *loop, uv_tcp_t *client, net::TlsContext *tls,
                                       PeerHandler *handler)
{
    auto *c = new PeerConnection(loop, handler);
    c->tcp_ = client;
    c->tcp_->data = c;
    c->tls_ctx_ = tls;
    c->sniffing_ = true;
    sockaddr_storage ss{};
    int len = sizeof ss;
    if (uv_tcp_getpeername(client, reinterpret_cast<sockaddr *>(&ss), &len) == 0)
        c->addr_ = address_of(ss);
    uv_tcp_nodelay(client, 1);
    c->resume_reading();
    return c;
}

void PeerConnection::on_connect(uv_connect_t *req, int status)
{
    auto *c = static_cast<PeerConnection *>(req->data);
    delete req;
    if (status == UV_ECANCELED || c->closing_)
        return;
    if (status != 0) {
        c->close("connect " + c->addr_.to_string() + ": " + uv_strerror(status));
        return;
    }
    c->connected();
}

void PeerConnection::connected()
{
    uv_tcp_nodelay(tcp_, 1);
    resume_reading();
    if (tls_ctx_) {
        start_tls(false);
        return;
    }
    write_raw(our_handshake());
    sent_handshake_ = true;
}

void PeerConnection::start_tls(bool server)
{
    tls_ = std::make_unique<net::TlsSession>(*tls_ctx_, server);
    tls_->on_ciphertext = [this](std::string_view bytes) { write_raw(std::string(bytes)); };
    tls_->on_plaintext = [this](std::string_view bytes) { received_plain(bytes); };
    tls_->on_handshake_done = [this] {
        if (outgoing_ && !sent_handshake_) {
            queue_plain(our_handshake());
            sent_handshake_ = true;
            flush();
        }
    };
    tls_->start();
}

std::string PeerConnection::our_handshake() const
{
    wire::Handshake hs;
    hs.info_hash = info_hash_;
    hs.peer_id = our_id_;
    return wire::encode_handshake(hs);
}

void PeerConnection::send_handshake(const PeerId &our_id)
{
    if (closing_ || sent_handshake_)
        return;
    our_id_ = our_id;
    queue_plain(our_handshake());
    sent_handshake_ = true;
    flush();
}

void PeerConnection::on_alloc(uv_handle_t *, size_t, uv_buf_t *buf)
{
    buf->base = g_read_buf;
    buf->len = sizeof g_read_buf;
}

void PeerConnection::on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    auto *c = static_cast<PeerConnection *>(s->data);
    if (c->closing_)
        return;
    if (n < 0) {
        c->close(n == UV_EOF ? "peer closed the connection" : std::string("read: ") + uv_strerror(static_cast<int>(n)));
        return;
    }
    if (n == 0)
        return;
    c->bytes_in_ += static_cast<std::uint64_t>(n);
    c->last_received_ = clock::now();
    c->in_read_ = true;
    c->received(std::string_view(buf->base, static_cast<std::size_t>(n)));
    c->in_read_ = false;
    if (!c->closing_)
        c->flush();
}

void PeerConnection::received(std::string_view bytes)
{
    if (sniffing_) {
        sniffing_ = false;
        auto first = static_cast<unsigned char>(bytes.front());
        if (first == 0x16) {
            if (!tls_ctx_) {
                close("TLS connection refused: TLS is disabled (security.tls_enabled = false)");
                return;
            }
            start_tls(true);
        } else if (first != 19) {
            close("not a BitTorrent or TLS connection (first byte " + std::to_string(first) + ")");
            return;
        }
    }
    if (tls_) {
        if (!tls_->feed(bytes) && !closing_)
            close(tls_->error());
        return;
    }
    received_plain(bytes);
}

void PeerConnection::received_plain(std::string_view bytes)
{
    if (closing_)
        return;
    try {
        if (in_.empty()) {
            std::size_t used = parse(bytes);
            if (!closing_ && used < bytes.size())
                in_.assign(bytes.substr(used));
        } else {
            in_.append(bytes);
            std::size_t used = parse(in_);
            if (!closing_)
                in_.erase(0, used);
        }
        if (in_.empty() && in_.capacity() > 64 * 1024)
            std::string().swap(in_);
    } catch (const std::exception &e) {
        close(e.what());
    }
}

std::size_t PeerConnection::parse(std::string_view data)
{
    std::size_t used = 0;
    if (!got_handshake_) {
        if (data.size() < wire::kHandshakeSize)
            return 0;
        handshake_received(data.substr(0, wire::kHandshakeSize));
        used = wire::kHandshakeSize;
    }
    while (!closing_) {
        wire::Message m;
        std::size_t n = wire::decode_message(data.substr(used), m, max_message_);
        if (n == 0)
            break;
        used += n;
        if (handler_)
            handler_->on_message(*this, m);
    }
    return used;
}

void PeerConnection::handshake_received(std::string_view raw)
{
    wire::Handshake hs = wire::decode_handshake(raw);
    if (outgoing_ && hs.info_hash != info_hash_)
        throw Error(Errc::PROTO, "peer", "handshake", addr_.to_string() + " answered for another torrent");
    if (tls_) {
        PeerId expected = peer_id_for_key(tls_->peer_public_key_der());
        if (expected != hs.peer_id)
            throw Error(Errc::PERM, "peer", "handshake",
                        addr_.to_string() + ": peer id does not match its TLS certificate");
    }
    info_hash_ = hs.info_hash;
    peer_id_ = hs.peer_id;
    peer_ext_ = hs.extensions;
    peer_fast_ = hs.fast;
    got_handshake_ = true;
    if (handler_)
        handler_->on_handshake(*this);
}

void PeerConnection::send(const wire::Message &m)
{
    if (closing_)
        return;
    std::string bytes;
    wire::encode_to(bytes, m);
    queue_plain(bytes);
    if (!in_read_)
        flush();
}

void PeerConnection::send_extended(std::uint8_t ext_id, std::string_view payload)
{
    wire::Message m;
    m.type = wire::MsgType::Extended;
    m.ext_id = ext_id;
    m.payload = payload;
    send(m);
}

void PeerConnection::send_piece(std::uint32_t index, std::uint32_t begin, std::string data)
{
    if (closing_)
        return;
    std::string header;
    wire::encode_piece_header(header, index, begin, static_cast<std::uint32_t>(data.size()));
    if (tls_) {
        queue_plain(header);
        queue_plain(data);
        flush();
        return;
    }
    flush(); // keep message order: what was queued goes first
    write_raw(std::move(header), std::move(data));
}

void PeerConnection::queue_plain(std::string_view bytes)
{
    out_.append(bytes);
}

void PeerConnection::flush()
{
    if (closing_ || out_.empty())
        return;
    if (tls_) {
        if (!tls_->write(out_)) {
            if (tls_->failed()) {
                close(tls_->error());
                return;
            }
        }
        out_.clear();
        return;
    }
    std::string bytes;
    bytes.swap(out_);
    write_raw(std::move(bytes));
}

void PeerConnection::write_raw(std::string a, std::string b)
{
    if (closing_ || !tcp_)
        return;
    auto *w = new WriteReq;
    w->a = std::move(a);
    w->b = std::move(b);
    w->self = this;
    w->req.data = w;
    uv_buf_t bufs[2] = {uv_buf_init(w->a.data(), static_cast<unsigned>(w->a.size())),
                        uv_buf_init(w->b.data(), static_cast<unsigned>(w->b.size()))};
    const std::size_t size = w->size();
    int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t *>(tcp_), bufs, w->b.empty() ? 1 : 2, on_write);
    if (rc != 0) {
        delete w;
        close(std::string("write: ") + uv_strerror(rc));
        return;
    }
    queued_ += size;
    bytes_out_ += size;
    last_sent_ = clock::now();
}

void PeerConnection::on_write(uv_write_t *req, int status)
{
    auto *w = static_cast<WriteReq *>(req->data);
    PeerConnection *c = w->self; // alive: the socket's close callback comes after every write callback
    c->queued_ -= w->size();
    delete w;
    if (c->closing_)
        return;
    if (status < 0 && status != UV_ECANCELED)
        c->close(std::string("write: ") + uv_strerror(status));
    else if (c->queued_ < kLowWater && c->handler_)
        c->handler_->on_writable(*c);
}

void PeerConnection::pause_reading()
{
    if (reading_ && tcp_ && !closing_) {
        uv_read_stop(reinterpret_cast<uv_stream_t *>(tcp_));
        reading_ = false;
    }
}

void PeerConnection::resume_reading()
{
    if (!reading_ && tcp_ && !closing_) {
        if (uv_read_start(reinterpret_cast<uv_stream_t *>(tcp_), on_alloc, on_read) == 0)
            reading_ = true;
    }
}

void PeerConnection::close(const std::string &reason)
{
    if (closing_)
        return;
    closing_ = true;
    PeerHandler *h = handler_;
    handler_ = nullptr;
    if (tcp_) {
        uv_tcp_t *t = tcp_;
        tcp_ = nullptr;
        net::close_and_delete(t, [this] { delete this; });
    }
    if (h)
        h->on_closed(*this, reason, !got_handshake_);
}

std::size_t PeerConnection::memory_bytes() const noexcept
{
    return sizeof(*this) + sizeof(uv_tcp_t) + in_.capacity() + out_.capacity() + state.have.bytes().size() +
           state.early_bitfield.capacity() + (tls_ ? 40 * 1024 : 0);
}

} // namespace openace::transport
