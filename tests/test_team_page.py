"""The team page: members and roles, kept by the team's admins without Django's admin."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test import Client
from factories import make_member

from tasks_app.models import Membership, TeamRole
from tasks_app.services import memberships

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_person(team):
    """Dora, the admin of team A."""
    return make_member("dora", team, role=TeamRole.ADMIN)


@pytest.fixture
def dora(admin_person) -> Client:
    client = Client()
    client.force_login(admin_person)
    return client


def membership_of(person, team) -> Membership:
    return Membership.objects.get(user=person, team=team)


def page_text(response) -> str:
    return response.content.decode()


class TestTheTeamPage:
    def test_lists_the_members_with_their_roles(self, dora, admin_person, user, team):
        page = dora.get("/team/")

        assert page.status_code == 200
        html = page_text(page)
        assert team.name in html
        assert f'id="member-{membership_of(user, team).pk}"' in html
        assert f'id="member-{membership_of(admin_person, team).pk}"' in html
        assert "alice" in html and "dora" in html

    def test_is_linked_from_the_top_navigation(self, alice):
        assert 'href="/team/"' in page_text(alice.get("/tasks/"))

    def test_a_member_sees_it_read_only(self, alice, admin_person, team):
        html = page_text(alice.get("/team/"))

        assert 'data-testid="read-only"' in html
        assert "/team/members/add/" not in html
        assert "/team/budget/" not in html
        assert f"/team/members/{membership_of(admin_person, team).pk}/role/" not in html
        assert "dora" in html  # the members are still listed

    def test_an_admin_sees_the_forms(self, dora, user, team):
        html = page_text(dora.get("/team/"))

        assert 'data-testid="read-only"' not in html
        assert "/team/members/add/" in html
        assert "/team/budget/" in html
        assert f"/team/members/{membership_of(user, team).pk}/role/" in html

    def test_shows_only_the_current_team(self, dora, team, other_user):
        html = page_text(dora.get("/team/"))
        assert "bob" not in html
        assert "dora" in html


class TestAddingAPerson:
    def test_by_username(self, dora, team, other_user):
        response = dora.post("/team/members/add/", {"who": "bob", "role": TeamRole.MEMBER})

        assert response.status_code == 302
        assert membership_of(other_user, team).role == TeamRole.MEMBER

    def test_by_e_mail_address_in_any_case(self, dora, team):
        person = make_member("erin", email="erin@studio.example")

        response = dora.post(
            "/team/members/add/", {"who": "Erin@Studio.Example", "role": TeamRole.ADMIN}
        )

        assert response.status_code == 302
        assert membership_of(person, team).role == TeamRole.ADMIN

    def test_an_unknown_name_is_an_error_next_to_the_field(self, dora, team):
        response = dora.post("/team/members/add/", {"who": "nobody", "role": TeamRole.MEMBER})

        assert response.status_code == 400
        html = page_text(response)
        assert 'id="who-error"' in html
        assert "No account has this username or e-mail address" in html
        assert 'value="nobody"' in html
        assert Membership.objects.filter(team=team).count() == 1

    def test_an_address_two_accounts_share_asks_for_the_username(self, dora, team):
        make_member("frank", email="shared@studio.example")
        make_member("grace", email="shared@studio.example")

        response = dora.post(
            "/team/members/add/", {"who": "shared@studio.example", "role": TeamRole.MEMBER}
        )

        assert response.status_code == 400
        assert "type the person&#x27;s username instead" in page_text(response)
        assert Membership.objects.filter(team=team).count() == 1

    def test_someone_already_in_the_team_is_an_error(self, dora, user, team):
        response = dora.post("/team/members/add/", {"who": "alice", "role": TeamRole.ADMIN})

        assert response.status_code == 400
        assert "alice is already in this team." in page_text(response)
        assert membership_of(user, team).role == TeamRole.MEMBER

    def test_an_empty_name_is_an_error(self, dora):
        response = dora.post("/team/members/add/", {"who": "  ", "role": TeamRole.MEMBER})
        assert response.status_code == 400
        assert 'id="who-error"' in page_text(response)

    def test_a_member_may_not_add_anyone(self, alice, team, other_user):
        response = alice.post("/team/members/add/", {"who": "bob", "role": TeamRole.ADMIN})

        assert response.status_code == 403
        assert not Membership.objects.filter(team=team, user=other_user).exists()


class TestChangingRoles:
    def test_an_admin_makes_a_member_an_admin_and_back(self, dora, user, team):
        membership = membership_of(user, team)
        url = f"/team/members/{membership.pk}/role/"

        assert dora.post(url, {"role": TeamRole.ADMIN}).status_code == 302
        assert membership_of(user, team).role == TeamRole.ADMIN
        assert dora.post(url, {"role": TeamRole.MEMBER}).status_code == 302
        assert membership_of(user, team).role == TeamRole.MEMBER

    def test_the_last_admin_cannot_be_made_a_member(self, dora, admin_person, team):
        membership = membership_of(admin_person, team)

        response = dora.post(f"/team/members/{membership.pk}/role/", {"role": TeamRole.MEMBER})

        assert response.status_code == 400
        assert "dora is the team&#x27;s only admin" in page_text(response)
        assert membership_of(admin_person, team).role == TeamRole.ADMIN

    def test_an_admin_may_step_down_once_there_is_another(self, dora, admin_person, user, team):
        put_role(user, team, TeamRole.ADMIN)
        membership = membership_of(admin_person, team)

        response = dora.post(f"/team/members/{membership.pk}/role/", {"role": TeamRole.MEMBER})

        assert response.status_code == 302
        assert membership_of(admin_person, team).role == TeamRole.MEMBER

    def test_an_unknown_role_is_an_error(self, dora, user, team):
        membership = membership_of(user, team)
        response = dora.post(f"/team/members/{membership.pk}/role/", {"role": "owner"})
        assert response.status_code == 400
        assert membership_of(user, team).role == TeamRole.MEMBER

    def test_a_member_may_not_change_roles(self, alice, user, team):
        membership = membership_of(user, team)
        response = alice.post(f"/team/members/{membership.pk}/role/", {"role": TeamRole.ADMIN})
        assert response.status_code == 403
        assert membership_of(user, team).role == TeamRole.MEMBER


def put_role(person, team, role: str) -> None:
    Membership.objects.filter(user=person, team=team).update(role=role)


class TestRemovingAndLeaving:
    def test_an_admin_removes_a_member_whose_jobs_stay_the_teams(self, dora, user, team):
        membership = membership_of(user, team)

        response = dora.post(f"/team/members/{membership.pk}/remove/")

        assert response.status_code == 302
        assert not Membership.objects.filter(team=team, user=user).exists()
        assert Membership.objects.filter(team=team).count() == 1

    def test_a_member_may_leave(self, alice, user, team, admin_person):
        response = alice.post(f"/team/members/{membership_of(user, team).pk}/remove/")

        assert response.status_code == 302
        assert not Membership.objects.filter(team=team, user=user).exists()
        assert Membership.objects.filter(team=team, user=admin_person).exists()

    def test_a_member_may_not_remove_someone_else(self, alice, team, admin_person):
        response = alice.post(f"/team/members/{membership_of(admin_person, team).pk}/remove/")
        assert response.status_code == 403
        assert Membership.objects.filter(team=team, user=admin_person).exists()

    def test_the_last_admin_cannot_leave(self, dora, admin_person, team, user):
        response = dora.post(f"/team/members/{membership_of(admin_person, team).pk}/remove/")

        assert response.status_code == 400
        assert "cannot leave it. Make someone else an admin first." in page_text(response)
        assert Membership.objects.filter(team=team, user=admin_person).exists()

    def test_an_admin_may_leave_once_there_is_another(self, dora, admin_person, user, team):
        put_role(user, team, TeamRole.ADMIN)

        response = dora.post(f"/team/members/{membership_of(admin_person, team).pk}/remove/")

        assert response.status_code == 302
        assert not Membership.objects.filter(team=team, user=admin_person).exists()

    def test_of_two_admins_removing_each_other_one_stays(self, admin_person, user, team):
        """One after the other, in the service: the second removal would leave no admin."""
        put_role(user, team, TeamRole.ADMIN)
        first = membership_of(admin_person, team).pk
        second = membership_of(user, team).pk

        memberships.membership_remove(team=team, membership_id=first)
        with pytest.raises(memberships.MembershipRefused):
            memberships.membership_remove(team=team, membership_id=second)

        assert list(Membership.objects.filter(team=team).values_list("role", flat=True)) == [
            TeamRole.ADMIN
        ]


class TestAnotherTeamsMembers:
    @pytest.mark.parametrize("action", ["role", "remove"])
    def test_are_a_404_even_for_an_admin(self, dora, other_user, other_team, action):
        membership = membership_of(other_user, other_team)

        response = dora.post(f"/team/members/{membership.pk}/{action}/", {"role": "admin"})

        assert response.status_code == 404
        assert membership_of(other_user, other_team).role == TeamRole.MEMBER

    def test_a_teams_own_member_id_is_not_a_404(self, dora, user, team):
        membership = membership_of(user, team)
        assert (
            dora.post(f"/team/members/{membership.pk}/role/", {"role": "admin"}).status_code == 302
        )

    def test_the_page_never_shows_another_teams_people(self, bob, other_team):
        html = page_text(bob.get("/team/"))
        assert "bob" in html
        assert "alice" not in html


@pytest.mark.django_db(transaction=True)
class TestTwoAdminsAtOnce:
    def test_cannot_remove_the_last_two_admins_together(self, team):
        """Each admin removes the other in its own thread and connection: the team's row lock
        serves them one after the other, so the second sees it would leave no admin."""
        first = make_member("dora", team, role=TeamRole.ADMIN)
        second = make_member("erin", team, role=TeamRole.ADMIN)
        ids = [membership_of(first, team).pk, membership_of(second, team).pk]
        outcomes: list[str] = []
        start = threading.Barrier(2)

        def remove(membership_id: int) -> None:
            start.wait()
            try:
                memberships.membership_remove(team=team, membership_id=membership_id)
                outcomes.append("removed")
            except memberships.MembershipRefused:
                outcomes.append("refused")
            finally:
                connection.close()

        threads = [threading.Thread(target=remove, args=(pk,)) for pk in ids]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

        assert sorted(outcomes) == ["refused", "removed"]
        assert Membership.objects.filter(team=team, role=TeamRole.ADMIN).count() == 1
