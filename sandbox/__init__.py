"""The sandbox: a cloud that stands in for EC2 on this machine, so the whole flow runs with no AWS account.

moto on 127.0.0.1 is its API (``boxes.ensure_moto``; ``motoplace`` adds the
placement groups moto lacks): boto3 talks to it exactly as to AWS, and
provision/ runs its AWS code unchanged. What AWS would do with real machines,
the sandbox does with boxes on this machine:

- boxes.py: a box per instance, of one of two kinds, and its folders, ports
  and IMDS stand-in records; sshd.py the process box's sshd (also every SSH
  test's host); container.py the booted container box, rootfs.py its Debian
  root, layers.py its layers frozen for images;
- attach.py: the box booted for an instance moto launched, pointed at from
  the box's state instead of moto's fake IP;
- images.py: what a trainbox image is here (a frozen layer or disk folder);
- group.py: a --recover box's Auto Scaling group, with what moto lacks of it;
- imds.py: the IMDSv2 stand-in a container box's agent polls (the spot notice,
  the instance's identity, its role's credentials from moto);
- reclaim.py: a --recover box's spot instance reclaimed, as AWS does it
  (`sandbox-notice --action terminate`);
- cloud.py: the sandbox as provision sees it, ``Cloud(..., sandbox=True)``:
  its pace and what moto lacks, and the hooks provision calls after its AWS
  steps, where the boxes reconcile with moto's instances.

Importing the package registers cloud.py with common/aws.py (provision never
imports the sandbox: the command line picks the cloud).
"""

from common import aws as _aws


def _stand_in():
    from .cloud import SandboxCloud

    return SandboxCloud()


# What `Cloud(..., sandbox=True)` stands for (common/aws.py): provision calls its hooks, never this package.
_aws.register_stand_in(_stand_in)
