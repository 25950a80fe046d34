// The BitTorrent peer-wire codec: handshake (BEP 3), length-prefixed messages
// (BEP 3, BEP 6 fast, BEP 5 port, BEP 10 extended), the BEP 10 extension
// handshake, BEP 9 ut_metadata, BEP 11 ut_pex and the BEP 6 allowed-fast set.
//
// Pure functions: no sockets, no state, safe to call from any thread.  The
// decoders take bytes from remote peers and are bounded: every length, count
// and nesting depth is checked, and bad input throws
// openace::Error(Errc::PROTO, "wire", <operation>, <detail naming the bad
// field>), after which the caller closes the peer.  They never read past the
// view they are given.
//
// Ownership: string_view fields of decoded values (Message::payload,
// MetadataMsg::data) point into the caller's input and are valid only while
// that buffer is unchanged.
#pragma once

#include "transport/magnet.hpp"
#include "transport/peer_address.hpp"

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace openace::transport::wire {

inline constexpr std::uint32_t kBlockSize = 16384;
inline constexpr std::size_t kHandshakeSize = 68;
// Largest accepted length prefix (the 4 prefix bytes not counted): a 16 KiB
// block with room to spare, or a bitfield of 2 million pieces.
inline constexpr std::uint32_t kMaxMessageLength = 1u << 18;
// Largest block a request / cancel / reject may name.
inline constexpr std::uint32_t kMaxRequestLength = 128u * 1024;

// ---- Handshake ------------------------------------------------------------

struct Handshake {
    InfoHash info_hash{};
    PeerId peer_id{};
    bool extensions = true; // BEP 10: reserved[5] & 0x10
    bool fast = true;       // BEP 6:  reserved[7] & 0x04
};

// The 68 handshake bytes: 19, "BitTorrent protocol", 8 reserved bytes (only
// the two flags above set), info hash, peer id.
std::string encode_handshake(const Handshake &h);

// `data` must be exactly kHandshakeSize bytes (else Error(INVAL, "wire",
// "handshake")).  Throws Error(PROTO, "wire", "handshake", why) when the
// pstrlen/pstr is not 19 "BitTorrent protocol".  Reserved bits other than
// the two flags are ignored.
Handshake decode_handshake(std::string_view data);

// ---- Messages -------------------------------------------------------------

enum class MsgType : std::uint8_t {
    Choke = 0,
    Unchoke = 1,
    Interested = 2,
    NotInterested = 3,
    Have = 4,
    Bitfield = 5,
    Request = 6,
    Piece = 7,
    Cancel = 8,
    Port = 9,
    Suggest = 13,
    HaveAll = 14,
    HaveNone = 15,
    Reject = 16,
    AllowedFast = 17,
    Extended = 20,
    KeepAlive = 255, // no id on the wire: a zero length prefix
};

// "choke", "not-interested", "request", "have-all", "allowed-fast",
// "keep-alive", ...; "unknown" for a value outside the enum.
const char *to_string(MsgType t) noexcept;

struct Message {
    MsgType type = MsgType::KeepAlive;
    std::uint32_t index = 0;  // have, request, cancel, reject, suggest, allowed-fast, piece
    std::uint32_t begin = 0;  // request, cancel, reject, piece
    std::uint32_t length = 0; // request, cancel, reject; piece: payload.size()
    std::uint16_t port = 0;   // port (BEP 5)
    std::uint8_t ext_id = 0;  // extended: 0 = extension handshake
    std::string_view payload; // bitfield bytes, piece block data, extended payload
                              // (points into the decoder's input)
};

// Frames one message from the front of `buf` (a receive buffer that may hold
// a partial message or several).  Returns the bytes it used (4 + length) and
// fills `out`, or returns 0 when `buf` does not yet hold a whole message.
//
// Throws Error(PROTO, "wire", "decode", "message 6 (request): length 9,
// expected 13") for a wrong fixed length, an unknown message id (the caller
// closes the peer), a length prefix over `max_length`, a request / cancel /
// reject naming more than kMaxRequestLength bytes, or an extended message
// without its extended id.  The length prefix is checked as soon as its 4
// bytes are there and the id against the length as soon as the id byte is,
// so an oversized or malformed message fails before its body arrives.
std::size_t decode_message(std::string_view buf, Message &out,
                           std::uint32_t max_length = kMaxMessageLength);

// Appends the encoding of `m` (every type, keep-alive included); piece,
// bitfield and extended messages carry m.payload (piece ignores m.length and
// uses payload.size()).  Fields a type does not use are ignored.  Throws
// Error(INVAL, "wire", "encode") for a type outside the enum or a payload
// too large for a 32-bit length.
void encode_to(std::string &out, const Message &m);

// Appends only the 13-byte header of a piece message whose `length` data
// bytes the caller writes next (zero-copy sends from the piece store).
void encode_piece_header(std::string &out, std::uint32_t index, std::uint32_t begin,
                         std::uint32_t length);

// ---- BEP 10 extension handshake (extended message id 0) -------------------

inline constexpr std::size_t kMaxExtHandshakeSize = 64 * 1024;

struct ExtHandshake {
    std::map<std::string, int> m;     // extension name -> message id (0 = disabled)
    std::int64_t metadata_size = -1;  // BEP 9, -1 = absent
    std::string client;               // "v"
    std::uint16_t listen_port = 0;    // "p", 0 = absent
    int reqq = 0;                     // "reqq", 0 = absent
    std::string yourip;               // raw 4 or 16 bytes, may be empty
    bool oa_tls = false;              // "oa_tls" = 1: an OpenAce peer that accepts TLS
                                      // on its listen port
    // Live swarms (docs/protocol.md §3); -1 = absent.
    std::int64_t live_window = -1;    // "oa_live_window": pieces kept, >= 1
    std::int64_t live_newest = -1;    // "oa_live_newest": newest verified sequence, >= 0
    std::int64_t live_desc_size = -1; // "oa_live_desc": descriptor bytes, 1..64 KiB
};

// The bencoded dictionary; absent fields (per the comments above) are left out.
std::string encode_ext_handshake(const ExtHandshake &h);

// Tolerant of unknown keys, unsorted or repeated keys and wrong-typed or
// out-of-range optional keys (ignored: metadata_size outside
// 1..kMaxMetadataSize, "p" outside 1..65535, "reqq" < 1, "yourip" not 4 or 16
// bytes, non-integer "m" entries, oa_live_window < 1, oa_live_newest < 0,
// oa_live_desc outside 1..65536).  Throws Error(PROTO, "wire",
// "ext-handshake") when the payload is not a bencoded dict, is over
// kMaxExtHandshakeSize bytes, or "m" holds an id outside 0..255.
ExtHandshake decode_ext_handshake(std::string_view payload);

// ---- BEP 9 ut_metadata ----------------------------------------------------

inline constexpr std::size_t kMetadataPieceSize = 16384;
inline constexpr std::int64_t kMaxMetadataSize = 8 << 20;

struct MetadataMsg {
    int msg_type = 0;             // 0 request, 1 data, 2 reject
    std::uint32_t piece = 0;
    std::int64_t total_size = -1; // data only
    std::string_view data;        // data only: bytes after the dict (points into the input)
};

// The bencoded dict; a data message (msg_type 1) has total_size and the data
// bytes appended after it.
std::string encode_metadata_msg(const MetadataMsg &m);

// Throws Error(PROTO, "wire", "metadata") for a payload that is not a
// bencoded dict (optionally followed by data), an unknown msg_type, a missing
// piece or one beyond the largest metadata, data without total_size,
// total_size outside 1..kMaxMetadataSize, a piece beyond total_size, or data
// longer than kMetadataPieceSize.  Bytes after the dict of a request or
// reject are ignored.
MetadataMsg decode_metadata_msg(std::string_view payload);

// ---- BEP 11 ut_pex --------------------------------------------------------

inline constexpr std::size_t kMaxPexPeers = 200;

struct PexMsg {
    std::vector<PeerAddress> added, dropped; // IPv4 ("added"/"dropped") then IPv6
                                             // ("added6"/"dropped6")
    std::vector<std::uint8_t> added_flags;   // per added peer (same order), 0 when absent
};

// Peers whose ip is not a numeric address are left out (with their flags);
// added_flags shorter than added means 0 for the rest.
std::string encode_pex(const PexMsg &m);

// Keeps at most kMaxPexPeers added and kMaxPexPeers dropped peers (the rest
// are ignored, not an error), drops port-0 entries, ignores wrong-typed keys.
// decode_pex always returns added_flags.size() == added.size().  Throws
// Error(PROTO, "wire", "pex") when the payload is not a bencoded dict.
PexMsg decode_pex(std::string_view payload);

// ---- BEP 6 allowed fast ---------------------------------------------------

// The first k piece indices of the BEP 6 allowed-fast set for a peer whose
// IPv4 address is `ipv4` (numeric host order: 127.0.0.1 is 0x7f000001).
// k is clamped to num_pieces; an empty set for num_pieces == 0 or k <= 0.
// Cost grows with k (one SHA-1 per 5 candidates): keep k small (~10).
std::vector<std::uint32_t> allowed_fast_set(const InfoHash &ih, std::uint32_t ipv4,
                                            std::uint32_t num_pieces, int k);

} // namespace openace::transport::wire
