"""`manage.py brook_setup`: what `make run` needs besides migrations: the demo tenant and a local admin login.

See docs/tenants.md.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from tenants.services import tenant_ensure_demo

ADMIN_USERNAME = "admin"


class Command(BaseCommand):
    help = "Ensure the demo tenant exists and, when DEBUG is on, a local admin login (its password printed once)."

    def handle(self, *args: Any, **options: Any) -> None:
        tenant, created = tenant_ensure_demo()
        self.stdout.write(f"Demo tenant {'created' if created else 'present'}: public key {tenant.public_key!r}")
        if not settings.DEBUG:
            return
        users = get_user_model()
        if users.objects.filter(username=ADMIN_USERNAME).exists():
            self.stdout.write(
                f"Admin login {ADMIN_USERNAME!r} exists "
                f"(forgot the password? python manage.py changepassword {ADMIN_USERNAME})."
            )
            return
        password = secrets.token_urlsafe(12)
        users.objects.create_superuser(username=ADMIN_USERNAME, email="", password=password)
        self.stdout.write(self.style.SUCCESS(f"Admin login created: {ADMIN_USERNAME} / {password}  (shown only once)"))
