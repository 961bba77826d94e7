"""Attacks on the release channel, each rejected by the device client (python-tuf ngclient over real
HTTP on 127.0.0.1) with nothing written to the staging folder: tampered and endless targets, replayed
timestamp and snapshot (rollback), expired timestamp (freeze), mix-and-match, wrong keys, an unsigned
pointer change, and key rotation (the client follows the new root and rejects the old key)."""

from __future__ import annotations

import shutil
import time

import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import TargetFile

from edge.contracts.release_layout import pointer_bytes, pointer_custom
from edge.releases import ClientLimits, ReleaseRejected, ReleaseUnavailable
from edgeloop.testkit.releases import (
    fetch,
    forge,
    make_candidate,
    release_config,
    staged,
    tamper_server,
    tiny_onnx,
)
from flows.releases import init_repository, publish, rotate_key
from flows.releases.keys import key_file
from flows.releases.repository import LocalRepository


class World:
    """A repository with releases 1 and 2 on canary, served on 127.0.0.1; ``device`` is a client folder."""

    def __init__(self, tmp_path, **expiry: float) -> None:
        self.tmp = tmp_path
        self.config = release_config(tmp_path, **expiry)
        self.root = init_repository(self.config).read_bytes()
        self.device = tmp_path / "device"
        self.publish(1)

    def publish(self, seed: int) -> int:
        folder = make_candidate(self.tmp / f"cand-{seed}", tiny_onnx(seed), f"cand-{seed:012d}")
        return publish(self.config, folder, "canary").version

    def metadata(self, name: str) -> bytes:
        return (self.config.metadata_dir / name).read_bytes()

    def stored(self, version: int, name: str) -> str:
        """URL path of a bundle file as the client asks for it (consistent snapshot name)."""
        info = LocalRepository(self.config).targets().targets[f"bundles/{version}/{name}"]
        return f"/targets/bundles/{version}/{info.hashes['sha256']}.{name}"

    def copy(self, name: str = "attacker-copy"):
        folder = self.tmp / name
        shutil.copytree(self.config.repository, folder)
        return folder


@pytest.fixture
def world(tmp_path) -> World:
    return World(tmp_path)


def rejected(world: World, server, error=ReleaseRejected, cause=None, **kw) -> None:
    before = staged(world.device)
    with pytest.raises(error) as caught:
        fetch(server.url, world.device, **kw)
    if cause is not None:
        assert isinstance(caught.value.__cause__, cause), repr(caught.value.__cause__)
    assert staged(world.device) == before  # nothing written to the destination
    assert not any(p.name.startswith(".") for p in (world.device / "staging").glob("*"))


def test_tampered_model_same_length_one_byte_flipped(world) -> None:
    from tuf.api.exceptions import LengthOrHashMismatchError

    def flip(body: bytes) -> bytes:
        return body[:100] + bytes([body[100] ^ 1]) + body[101:]

    with tamper_server(world.config.repository) as server:
        server.rules[world.stored(1, "model.onnx")] = flip
        rejected(world, server, cause=LengthOrHashMismatchError, root=world.root)
        assert staged(world.device) == []
        del server.rules[world.stored(1, "model.onnx")]
        assert fetch(server.url, world.device).model_path.read_bytes() == tiny_onnx(1)


def test_target_longer_than_signed_endless_data_and_a_trickle(world) -> None:
    from tuf.api.exceptions import DownloadLengthMismatchError

    with tamper_server(world.config.repository) as server:
        server.rules[world.stored(1, "model.onnx")] = "endless"
        rejected(world, server, cause=DownloadLengthMismatchError, root=world.root)
        server.rules[world.stored(1, "model.onnx")] = "trickle"  # within every read timeout, forever
        started = time.monotonic()
        rejected(world, server, ReleaseUnavailable, limits=ClientLimits(deadline_seconds=1.0))
        assert time.monotonic() - started < 3.0
        assert staged(world.device) == []


def test_replayed_timestamp_and_snapshot_are_rejected(world) -> None:
    from tuf.api.exceptions import BadVersionNumberError, LengthOrHashMismatchError, RepositoryError

    old_timestamp = world.metadata("timestamp.json")
    world.publish(2)
    with tamper_server(world.config.repository) as server:
        assert fetch(server.url, world.device, root=world.root).version == 2
        server.rules["/metadata/timestamp.json$"] = old_timestamp  # rollback to release 1
        rejected(world, server, cause=BadVersionNumberError)
        del server.rules["/metadata/timestamp.json$"]
        snapshot_2 = world.metadata("3.snapshot.json")
        world.publish(3)
        server.rules["/metadata/4.snapshot.json$"] = snapshot_2  # replay an older snapshot as the newest
        rejected(world, server, cause=(BadVersionNumberError, LengthOrHashMismatchError, RepositoryError))
        del server.rules["/metadata/4.snapshot.json$"]
        assert fetch(server.url, world.device, current=2).version == 3


@pytest.mark.parametrize("role", ["snapshot", "targets"])
def test_mix_and_match_older_metadata_served_as_current(world, role) -> None:
    from tuf.api.exceptions import RepositoryError

    with tamper_server(world.config.repository) as server:
        fetch(server.url, world.device, root=world.root)
        older = world.metadata(f"2.{role}.json")
        world.publish(2)
        server.rules[f"/metadata/3.{role}.json$"] = older
        rejected(world, server, cause=RepositoryError, current=1)
        assert staged(world.device) == ["1", "1/manifest.json", "1/model.onnx"]


def test_expired_timestamp_freezes_nobody(tmp_path) -> None:
    from tuf.api.exceptions import ExpiredMetadataError

    world = World(tmp_path, timestamp=-1.0 / 86400)  # signed already expired (a second ago): no waiting
    with tamper_server(world.config.repository) as server:
        rejected(world, server, cause=ExpiredMetadataError, root=world.root)


def test_metadata_signed_by_a_wrong_key(world) -> None:
    from tuf.api.exceptions import UnsignedMetadataError

    folder = world.copy()
    intruder = CryptoSigner.generate_ed25519()

    def point_canary_at_release_1_again(targets) -> None:  # the pointer file of release 1 is already stored
        pointer = TargetFile.from_data("channels/canary.json", pointer_bytes("canary", 1), ["sha256"])
        pointer.unrecognized_fields["custom"] = pointer_custom(1)
        targets.targets[pointer.path] = pointer

    world.publish(2)
    forge(world.config, folder, point_canary_at_release_1_again, targets_signer=intruder)
    with tamper_server(folder) as server:
        rejected(world, server, cause=UnsignedMetadataError, root=world.root)
    control = world.copy("control-copy")  # the same edit signed with the real key does verify
    forge(world.config, control, point_canary_at_release_1_again)
    with tamper_server(control) as server:
        assert fetch(server.url, world.tmp / "control-device", root=world.root).version == 1


def test_unsigned_channel_pointer_change(world) -> None:
    from tuf.api.exceptions import LengthOrHashMismatchError, RepositoryError

    world.publish(2)
    with tamper_server(world.config.repository) as server:
        pointer = LocalRepository(world.config).targets().targets["channels/canary.json"]
        path = f"/targets/channels/{pointer.hashes['sha256']}.canary.json"
        server.rules[path] = pointer_bytes("canary", 1)  # the file says 1, the signed metadata says 2
        rejected(world, server, cause=LengthOrHashMismatchError, root=world.root)
        del server.rules[path]
        current = f"/metadata/{LocalRepository(world.config).targets().version}.targets.json$"
        signed = b'{"manifest":"bundles/2/manifest.json","model":"bundles/2/model.onnx","version":2}'
        edited = signed.replace(b"2", b"1")

        def edit(body: bytes) -> bytes:
            assert signed in body  # otherwise the server thread fails and the client sees no rejection
            return body.replace(signed, edited)

        server.rules[current] = edit
        world.device = world.tmp / "another-device"  # one that has not cached the real targets metadata
        rejected(world, server, cause=RepositoryError, root=world.root)  # custom edited without re-signing


def test_rotated_targets_key_client_follows_and_rejects_the_old_key(world) -> None:
    from tuf.api.exceptions import UnsignedMetadataError

    with tamper_server(world.config.repository) as server:
        assert fetch(server.url, world.device, root=world.root).version == 1
        old_keyid = LocalRepository(world.config).root().roles["targets"].keyids[0]
        old_key_pem = key_file(world.config, "targets", old_keyid).read_bytes()
        report = rotate_key(world.config, "targets")
        assert report["root_version"] == 2 and report["old_keyids"] == [old_keyid]
        assert not key_file(world.config, "targets", old_keyid).exists()
        world.publish(2)
        got = fetch(server.url, world.device, current=1)  # follows root v2, verifies the new key
        assert got.version == 2
        assert (world.device / "metadata" / "root_history" / "2.root.json").is_file()
        fresh = fetch(server.url, world.tmp / "fresh", root=world.root)  # from root v1, across the rotation
        assert fresh.version == 2

    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    old = CryptoSigner(load_pem_private_key(old_key_pem, None))
    folder = world.copy()
    forge(world.config, folder, lambda targets: targets.targets.pop("bundles/2/model.onnx"), targets_signer=old)
    with tamper_server(folder) as server:
        rejected(world, server, cause=UnsignedMetadataError, current=2)
