#include "transport/identity.hpp"

#include "core/error.hpp"
#include "transport/magnet.hpp"

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>
#include <mbedtls/x509_crt.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <optional>
#include <system_error>

namespace openace::transport {

namespace {

constexpr std::size_t kMaxFileBytes = 64 * 1024;         // ours are under 1 KiB
constexpr std::time_t kCertLifetimeS = 7305 * 24 * 3600; // 20 years of 365.25 days
constexpr std::string_view kPeerIdPrefix = "-OA0100-";

// An mbedTLS context with its init/free pair: never copied, always freed.
template <class T, void (*Init)(T *), void (*Free)(T *)> struct Mbed {
    T v;
    Mbed() { Init(&v); }
    ~Mbed() { Free(&v); }
    Mbed(const Mbed &) = delete;
    Mbed &operator=(const Mbed &) = delete;
};
using Pk = Mbed<mbedtls_pk_context, mbedtls_pk_init, mbedtls_pk_free>;
using Crt = Mbed<mbedtls_x509_crt, mbedtls_x509_crt_init, mbedtls_x509_crt_free>;
using CrtWriter = Mbed<mbedtls_x509write_cert, mbedtls_x509write_crt_init, mbedtls_x509write_crt_free>;
using Mpi = Mbed<mbedtls_mpi, mbedtls_mpi_init, mbedtls_mpi_free>;

std::string mbed_error(int rc)
{
    char text[160];
    mbedtls_strerror(rc, text, sizeof text);
    return fmt::format("{} (-0x{:04x})", text, -rc);
}

std::string errno_text(int err)
{
    return std::error_code(err, std::generic_category()).message();
}

[[noreturn]] void io_error(const std::string &path, const std::string &why)
{
    throw_errorf(Errc::IO, "identity", "load", "{}: {}", path, why);
}

[[noreturn]] void parse_error(const std::string &path, const std::string &why)
{
    throw_errorf(Errc::PARSE, "identity", "load", "{}: {}", path, why);
}

struct Drbg {
    Mbed<mbedtls_entropy_context, mbedtls_entropy_init, mbedtls_entropy_free> entropy;
    Mbed<mbedtls_ctr_drbg_context, mbedtls_ctr_drbg_init, mbedtls_ctr_drbg_free> ctr;

    explicit Drbg(const std::string &dir)
    {
        static constexpr unsigned char pers[] = "openace-identity";
        if (int rc = mbedtls_ctr_drbg_seed(&ctr.v, mbedtls_entropy_func, &entropy.v, pers, sizeof pers - 1))
            io_error(dir, "no entropy for a new key: " + mbed_error(rc));
    }
};

// The file's bytes (at most kMaxFileBytes + 1, enough to fail any parser),
// or nullopt when it does not exist.
std::optional<std::string> read_file(const std::string &path)
{
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return std::nullopt;
        io_error(path, errno_text(errno));
    }
    std::string data(kMaxFileBytes + 1, '\0');
    std::size_t got = 0;
    while (got < data.size()) {
        ssize_t n = ::read(fd, data.data() + got, data.size() - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int err = errno;
            ::close(fd);
            io_error(path, errno_text(err));
        }
        if (n == 0)
            break;
        got += static_cast<std::size_t>(n);
    }
    ::close(fd);
    data.resize(got);
    return data;
}

bool write_all(int fd, std::string_view data)
{
    while (!data.empty()) {
        ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return false;
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

// Written to "<path>.tmp" (0600), synced, then renamed over path.
void write_file_atomic(const std::string &path, std::string_view data)
{
    const std::string tmp = path + ".tmp";
    ::unlink(tmp.c_str()); // a leftover of a crash
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        io_error(tmp, errno_text(errno));
    // fchmod: the umask may have taken bits away, never allowed more.
    bool ok = ::fchmod(fd, 0600) == 0 && write_all(fd, data) && ::fsync(fd) == 0;
    int err = errno;
    if (::close(fd) != 0 && ok) {
        ok = false;
        err = errno;
    }
    if (ok && ::rename(tmp.c_str(), path.c_str()) == 0)
        return;
    err = ok ? errno : err;
    ::unlink(tmp.c_str());
    io_error(ok ? path : tmp, errno_text(err));
}

void ensure_dir(const std::string &dir)
{
    struct stat st {};
    if (::stat(dir.c_str(), &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            io_error(dir, "not a directory");
        return;
    }
    if (errno != ENOENT)
        io_error(dir, errno_text(errno));
    std::filesystem::path parent = std::filesystem::path(dir).parent_path();
    std::error_code ec;
    if (!parent.empty())
        std::filesystem::create_directories(parent, ec);
    if (ec)
        io_error(parent.string(), ec.message());
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
        io_error(dir, errno_text(errno));
}

std::string public_key_der(mbedtls_pk_context &pk)
{
    unsigned char buf[512];
    int n = mbedtls_pk_write_pubkey_der(&pk, buf, sizeof buf);
    if (n < 0)
        throw_errorf(Errc::INTERNAL, "identity", "load", "public key: {}", mbed_error(n));
    return std::string(reinterpret_cast<const char *>(buf + sizeof buf - n), static_cast<std::size_t>(n));
}

std::string private_key_pem(mbedtls_pk_context &pk)
{
    unsigned char buf[1024];
    if (int rc = mbedtls_pk_write_key_pem(&pk, buf, sizeof buf))
        throw_errorf(Errc::INTERNAL, "identity", "load", "private key: {}", mbed_error(rc));
    return reinterpret_cast<const char *>(buf);
}

void parse_key(const std::string &path, const std::string &pem, Pk &pk)
{
    if (pem.find("-----BEGIN") == std::string::npos)
        parse_error(path, "not a PEM private key");
    auto *bytes = reinterpret_cast<const unsigned char *>(pem.c_str());
    if (int rc = mbedtls_pk_parse_key(&pk.v, bytes, pem.size() + 1, nullptr, 0))
        parse_error(path, "unreadable private key: " + mbed_error(rc));
    if (mbedtls_pk_get_type(&pk.v) != MBEDTLS_PK_ECKEY || mbedtls_pk_ec(pk.v)->grp.id != MBEDTLS_ECP_DP_SECP256R1)
        parse_error(path, "not an ECDSA P-256 private key");
}

void generate_key(const std::string &path, Pk &pk, Drbg &drbg)
{
    int rc = mbedtls_pk_setup(&pk.v, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
    if (rc == 0)
        rc = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(pk.v), mbedtls_ctr_drbg_random, &drbg.ctr.v);
    if (rc != 0)
        io_error(path, "cannot generate a key: " + mbed_error(rc));
}

// A certificate we can keep: parses, holds exactly this key, not expired.
bool cert_fits(const std::string &pem, const std::string &key_der)
{
    Crt crt;
    auto *bytes = reinterpret_cast<const unsigned char *>(pem.c_str());
    return mbedtls_x509_crt_parse(&crt.v, bytes, pem.size() + 1) == 0 && crt.v.next == nullptr &&
           public_key_der(crt.v.pk) == key_der && !mbedtls_x509_time_is_past(&crt.v.valid_to);
}

std::string x509_time(std::time_t t)
{
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    char text[16];
    std::strftime(text, sizeof text, "%Y%m%d%H%M%S", &tm);
    return text;
}

std::string make_cert(const std::string &path, mbedtls_pk_context &pk, const PeerId &id, Drbg &drbg)
{
    CrtWriter w;
    Mpi serial;
    unsigned char serial_bytes[16];
    const std::string name = "CN=openace-" + to_hex(id);
    const std::time_t now = std::time(nullptr);
    mbedtls_x509write_crt_set_version(&w.v, MBEDTLS_X509_CRT_VERSION_3);
    mbedtls_x509write_crt_set_md_alg(&w.v, MBEDTLS_MD_SHA256);
    mbedtls_x509write_crt_set_subject_key(&w.v, &pk);
    mbedtls_x509write_crt_set_issuer_key(&w.v, &pk);
    int rc = mbedtls_ctr_drbg_random(&drbg.ctr.v, serial_bytes, sizeof serial_bytes);
    serial_bytes[0] = static_cast<unsigned char>((serial_bytes[0] & 0x7f) | 0x40); // positive, full length
    if (rc == 0)
        rc = mbedtls_mpi_read_binary(&serial.v, serial_bytes, sizeof serial_bytes);
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_serial(&w.v, &serial.v);
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_subject_name(&w.v, name.c_str());
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_issuer_name(&w.v, name.c_str());
    if (rc == 0) // from an hour back: the clocks of other tools that read it may lag
        rc = mbedtls_x509write_crt_set_validity(&w.v, x509_time(now - 3600).c_str(),
                                                x509_time(now + kCertLifetimeS).c_str());
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_basic_constraints(&w.v, 0, -1);
    unsigned char pem[4096];
    if (rc == 0)
        rc = mbedtls_x509write_crt_pem(&w.v, pem, sizeof pem, mbedtls_ctr_drbg_random, &drbg.ctr.v);
    if (rc != 0)
        io_error(path, "cannot create a certificate: " + mbed_error(rc));
    return reinterpret_cast<const char *>(pem);
}

} // namespace

Identity load_or_create_identity(const std::string &dir_in)
{
    std::string dir = dir_in;
    while (dir.size() > 1 && dir.back() == '/')
        dir.pop_back();
    if (dir.empty())
        io_error("''", "empty state directory");
    ensure_dir(dir);
    const std::string key_path = dir + "/identity.key";
    const std::string crt_path = dir + "/identity.crt";
    const std::optional<std::string> key_file = read_file(key_path);
    const std::optional<std::string> crt_file = read_file(crt_path);

    Drbg drbg(dir);
    Pk pk;
    if (key_file)
        parse_key(key_path, *key_file, pk);
    else
        generate_key(key_path, pk, drbg);

    Identity id;
    id.key_pem = private_key_pem(pk.v);
    if (!key_file)
        write_file_atomic(key_path, id.key_pem);
    id.public_key_der = public_key_der(pk.v);
    id.peer_id = peer_id_for_key(id.public_key_der);
    if (key_file && crt_file && cert_fits(*crt_file, id.public_key_der)) {
        id.cert_pem = *crt_file;
    } else {
        id.cert_pem = make_cert(crt_path, pk.v, id.peer_id, drbg);
        write_file_atomic(crt_path, id.cert_pem);
    }
    return id;
}

PeerId peer_id_for_key(std::string_view public_key_der)
{
    unsigned char digest[32];
    mbedtls_sha256_ret(reinterpret_cast<const unsigned char *>(public_key_der.data()), public_key_der.size(), digest,
                       0);
    PeerId id{};
    std::memcpy(id.data(), kPeerIdPrefix.data(), kPeerIdPrefix.size());
    std::memcpy(id.data() + kPeerIdPrefix.size(), digest, id.size() - kPeerIdPrefix.size());
    return id;
}

bool is_openace_peer_id(const PeerId &id)
{
    return id[0] == '-' && id[1] == 'O' && id[2] == 'A';
}

} // namespace openace::transport
