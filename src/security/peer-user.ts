// Who is on the other end of a client connection. Both ends are on this host, so the kernel knows
// which user owns the client's socket: one sock_diag netlink query (the mechanism behind `ss -e`)
// asks for exactly that socket by its four addresses and ports, and answers with its owner's uid.
// Linux only; elsewhere the owner is unknown and the users allow-list cannot be used.
//
// SECURITY: the answer decides who may spend the key (--allow-user/--allow-group) and which
// upstream sockets a request may reuse. A lookup that fails answers `undefined`, never a guess:
// callers treat an unknown owner as a user of its own, and the allow-list refuses it.
import type { Libc } from "./libc";

const AF_NETLINK = 16;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const NETLINK_SOCK_DIAG = 4;
const SOCK_DIAG_BY_FAMILY = 20;
const NLM_F_REQUEST = 1;
const MSG_DONTWAIT = 0x40;
const AF_INET = 2;
const IPPROTO_TCP = 6;
const NLMSG_HDR = 16;
/** struct inet_diag_req_v2: family, protocol, ext, pad, states, then struct inet_diag_sockid. */
const REQ_LEN = NLMSG_HDR + 56;
/** Offset of idiag_uid in the answer: header, then inet_diag_msg's 4 bytes, sockid (48), 3 x u32. */
const UID_OFFSET = NLMSG_HDR + 4 + 48 + 12;

export interface PeerUsers {
  /** The uid owning the IPv4 loopback socket `clientAddress:clientPort` connected to our `serverPort`. */
  uid(clientAddress: string, clientPort: number, serverPort: number): number | undefined;
}

function ipv4Bytes(address: string): number[] | undefined {
  const parts = address.replace(/^::ffff:/, "").split(".").map(Number);
  return parts.length === 4 && parts.every((p) => Number.isInteger(p) && p >= 0 && p <= 255) ? parts : undefined;
}

/** The netlink request for one TCP socket (pure; exported for tests). */
export function diagRequest(client: number[], clientPort: number, server: number[], serverPort: number, seq: number): Uint8Array {
  const buf = new Uint8Array(REQ_LEN);
  const v = new DataView(buf.buffer);
  v.setUint32(0, REQ_LEN, true); // nlmsg_len
  v.setUint16(4, SOCK_DIAG_BY_FAMILY, true);
  v.setUint16(6, NLM_F_REQUEST, true); // an exact lookup, not a dump of every socket
  v.setUint32(8, seq, true);
  const req = NLMSG_HDR;
  buf[req] = AF_INET;
  buf[req + 1] = IPPROTO_TCP;
  v.setUint32(req + 4, 0xffffffff, true); // any state
  const id = req + 8;
  v.setUint16(id, clientPort, false); // idiag_sport: the client's socket is the one asked about
  v.setUint16(id + 2, serverPort, false); // idiag_dport
  buf.set(client, id + 4); // idiag_src[0]
  buf.set(server, id + 20); // idiag_dst[0]
  v.setUint32(id + 40, 0xffffffff, true); // idiag_cookie: INET_DIAG_NOCOOKIE
  v.setUint32(id + 44, 0xffffffff, true);
  return buf;
}

/** The owner from the kernel's answer, or undefined for an error or a short answer (pure). */
export function diagUid(answer: Uint8Array, length: number, seq: number): number | undefined {
  if (length < UID_OFFSET + 4) return undefined;
  const v = new DataView(answer.buffer, answer.byteOffset, length);
  if (v.getUint16(4, true) !== SOCK_DIAG_BY_FAMILY || v.getUint32(8, true) !== seq) return undefined;
  return v.getUint32(UID_OFFSET, true);
}

/**
 * Opens the netlink socket once, through the C library handle the hardening opened (libc.ts);
 * undefined where there is none (not Linux, or refused).
 */
export function openPeerUsers(libc: Libc | undefined): PeerUsers | undefined {
  if (process.platform !== "linux" || !libc) return undefined;
  const { socket, send, recv } = libc.fn as { [name in "socket" | "send" | "recv"]: (...args: unknown[]) => number | bigint };
  const fd = Number(socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (fd < 0) return undefined;
  const answer = new Uint8Array(8192);
  let seq = 0;
  return {
    uid(clientAddress, clientPort, serverPort) {
      const client = ipv4Bytes(clientAddress);
      if (!client) return undefined;
      seq = (seq + 1) >>> 0;
      const req = diagRequest(client, clientPort, [127, 0, 0, 1], serverPort, seq);
      if (Number(send(fd, req, req.byteLength, 0)) !== req.byteLength) return undefined;
      // The kernel answers a sock_diag request before send() returns, so recv never waits (and
      // must not: this runs on the event loop). An answer left over from an earlier lookup has
      // another sequence number and is skipped; an error answer (no such socket) is not a uid.
      for (let tries = 0; tries < 4; tries++) {
        const n = Number(recv(fd, answer, answer.byteLength, MSG_DONTWAIT));
        if (n <= 0) return undefined;
        const uid = diagUid(answer, n, seq);
        if (uid !== undefined || new DataView(answer.buffer).getUint32(8, true) === seq) return uid;
      }
      return undefined;
    },
  };
}
