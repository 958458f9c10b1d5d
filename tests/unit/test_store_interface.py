"""The real store and the fake one used by the unit tests both provide ``IStore``."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from squad.storage.store import IStore, Store
from tests.fakes import STORE_METHODS, FakeStore


class StoreInterfaceTests(SynchronousTestCase):
    def test_the_real_store_provides_the_interface(self) -> None:
        """``Store`` has every method of ``IStore``, with the same arguments."""
        self.assertTrue(verifyObject(IStore, Store(timeout=1.0)))

    def test_the_fake_store_provides_the_same_interface(self) -> None:
        """``FakeStore`` has every method of ``IStore`` with the same arguments, so a method
        the logic starts to use cannot be missing from the fake (it does not inherit the real
        one, which would reach txmongo)."""
        self.assertTrue(verifyObject(IStore, FakeStore()))

    def test_the_fake_gates_every_method_of_the_interface(self) -> None:
        """Every ``IStore`` method is one the fake can make fail or hang."""
        methods = {name for name in IStore.names() if name != "timeout"}
        self.assertEqual(methods, set(STORE_METHODS))
