import { expect, test } from "bun:test";
import { diagRequest, diagUid } from "../../src/security/peer-user";

test("the sock_diag request asks for exactly one TCP socket: client port and address as source, ours as destination", () => {
  const req = diagRequest([127, 0, 0, 1], 0xabcd, [127, 0, 0, 1], 8080, 7);
  const v = new DataView(req.buffer);
  expect(req.byteLength).toBe(72);
  expect(v.getUint32(0, true)).toBe(72); // nlmsg_len
  expect(v.getUint16(4, true)).toBe(20); // SOCK_DIAG_BY_FAMILY
  expect(v.getUint16(6, true)).toBe(1); // NLM_F_REQUEST, no dump
  expect(v.getUint32(8, true)).toBe(7); // seq
  expect([req[16], req[17]]).toEqual([2, 6]); // AF_INET, IPPROTO_TCP
  expect(v.getUint16(24, false)).toBe(0xabcd); // sport, network order
  expect(v.getUint16(26, false)).toBe(8080); // dport
  expect([...req.subarray(28, 32)]).toEqual([127, 0, 0, 1]);
  expect([...req.subarray(44, 48)]).toEqual([127, 0, 0, 1]);
});

test("the uid is read from the kernel's answer only when it answers this very request", () => {
  const answer = new Uint8Array(96);
  const v = new DataView(answer.buffer);
  v.setUint16(4, 20, true);
  v.setUint32(8, 7, true);
  v.setUint32(80, 65534, true); // idiag_uid
  expect(diagUid(answer, 96, 7)).toBe(65534);
  expect(diagUid(answer, 96, 8)).toBeUndefined(); // an answer to an earlier lookup
  expect(diagUid(answer, 60, 7)).toBeUndefined(); // too short
  v.setUint16(4, 2, true); // NLMSG_ERROR: no such socket
  expect(diagUid(answer, 96, 7)).toBeUndefined();
});
