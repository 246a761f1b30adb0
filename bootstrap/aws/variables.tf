variable "region" {
  description = "AWS region for the platform."
  type        = string
  default     = "us-east-1"
}

variable "org_unit_id" {
  description = "Organizations OU that new enclave accounts are moved into (ou-xxxx-yyyyyyyy)."
  type        = string

  validation {
    condition     = can(regex("^ou-[0-9a-z]{4,32}-[a-z0-9]{8,32}$", var.org_unit_id))
    error_message = "org_unit_id must look like ou-ab12-cdef3456."
  }
}

variable "email_domain" {
  description = "Domain for new account root emails (aws+<enclave>@<domain>)."
  type        = string
}

variable "account_prefix" {
  description = "Prefix for enclave account names (myorg -> myorg-product-a-dev)."
  type        = string
  default     = ""
}

variable "cross_account_role" {
  description = "Role nclav assumes in enclave accounts."
  type        = string
  default     = "OrganizationAccountAccessRole"
}

variable "default_cloud" {
  description = "The server's default cloud for enclaves without `cloud:` (`aws`: enclaves get their own account; `local`: no cloud calls)."
  type        = string
  default     = "aws"

  validation {
    condition     = contains(["local", "aws"], var.default_cloud)
    error_message = "default_cloud must be local or aws for this platform."
  }
}

variable "image_tag" {
  description = "Tag of the nclav image pushed to ECR (make push-ecr)."
  type        = string
  default     = "latest"
}

variable "vpc_cidr" {
  description = "CIDR of the platform VPC."
  type        = string
  default     = "10.42.0.0/16"
}

variable "db_instance_class" {
  description = "RDS instance class for the state database."
  type        = string
  default     = "db.t4g.micro"
}

variable "desired_count" {
  description = "ECS tasks running the API; they share the database and reconcile one at a time."
  type        = number
  default     = 2
}

variable "certificate_arn" {
  description = "ACM certificate for an HTTPS listener. Without it the ALB serves plain HTTP and the token crosses the network unencrypted: set it for anything but a trial."
  type        = string
  default     = ""
}

variable "allowed_cidrs" {
  description = "Networks allowed to reach the ALB."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "deletion_protection" {
  description = "Protect the database and load balancer from `terraform destroy`."
  type        = bool
  default     = true
}
