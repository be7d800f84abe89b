"""What a field technician (or a playbook) runs on the outlet PC beside the service:
the outbox's state before a decommission, a certificate renewal on demand, and a
diagnosis archive (docs/technicians.md)."""
