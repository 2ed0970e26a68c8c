"""The field history: whoever changes a field writes its row through `history.record`, and
`history.of` reads a referral's rows with its member's own, oldest first."""

from __future__ import annotations

from bridge.store import Store
from bridge.store.models import FieldChange, Member, Program, Referral
from bridge.writeback import history


def test_a_member_field_changed_through_a_referral_is_on_both_histories(store: Store) -> None:
    with store.session() as s:
        program = Program(key="main", name="Main")
        s.add(program)
        s.flush()
        member = Member(program_id=program.id, name="Max", email="max@m.test", referral_code="MAX")
        s.add(member)
        s.flush()
        referral = Referral(
            public_id="R1", program_id=program.id, member_id=member.id, email="ann@x.test",
            first_name="Ann", last_name="Lee",
        )  # fmt: skip
        other = Referral(
            public_id="R2", program_id=program.id, email="bo@x.test", first_name="Bo", last_name="K"
        )
        s.add_all([referral, other])
        s.flush()
        history.record(
            s, "company", source="local", outcome="applied", value="Acme", previous=None,
            actor="ui", referral=referral,
        )  # fmt: skip
        history.record(
            s, "member.email", source="salesforce", outcome="lost", value="m@x.test",
            previous="max@m.test", actor="sync", referral=referral, entry_id=None,
        )  # fmt: skip
        history.record(
            s, "member.name", source="local", outcome="applied", value="Maxi", previous="Max",
            actor="ui", member_id=member.id,
        )  # fmt: skip
        history.record(
            s, "company", source="local", outcome="applied", value="Other", previous=None,
            actor="ui", referral=other,
        )  # fmt: skip
        s.flush()
        rows = {(c.field, c.referral_id, c.member_id) for c in s.query(FieldChange)}
        assert ("company", referral.id, None) in rows
        assert ("member.email", referral.id, member.id) in rows
        assert ("member.name", None, member.id) in rows
        seen = [(h["field"], h["outcome"], h["value"]) for h in history.of(s, referral)]
        assert seen == [
            ("company", "applied", "Acme"),
            ("member.email", "lost", "m@x.test"),
            ("member.name", "applied", "Maxi"),
        ]
        assert [h["value"] for h in history.of(s, other)] == ["Other"]
