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

variable "api_url" {
  description = "The URL clients and agents call, e.g. https://nclav.example.com: a DNS name you point at the load balancer, covered by certificate_arn. Empty: the load balancer's own DNS name (only right without a certificate, since the certificate names your domain). Required with agents and a certificate."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^(https?://[^/\\s]+)?$", var.api_url))
    error_message = "api_url must be empty or a scheme and host without a path or trailing slash, e.g. https://nclav.example.com."
  }
}

variable "allowed_cidrs" {
  description = "Networks allowed to reach the ALB. Agents call the API through it too: while this admits 0.0.0.0/0 they use public IPs; otherwise the module gives them a NAT gateway and admits its address."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "deletion_protection" {
  description = "Protect the database and load balancer from `terraform destroy`."
  type        = bool
  default     = true
}

variable "agent_count" {
  description = "ECS tasks running `nclav agent` (0: none, and the API tasks run terraform themselves). With agents the server runs `--agents-only` and every run waits for an agent. Without certificate_arn the agents' token and the cloud credentials each job carries cross the network unencrypted."
  type        = number
  default     = 0

  validation {
    condition     = var.agent_count >= 0 && floor(var.agent_count) == var.agent_count
    error_message = "agent_count must be a whole number, 0 or more."
  }
}

variable "agent_parallelism" {
  description = "Runs one agent task executes at the same time (`nclav agent --parallelism`); each terraform process may take 200-500 MB."
  type        = number
  default     = 2

  validation {
    condition     = var.agent_parallelism >= 1 && floor(var.agent_parallelism) == var.agent_parallelism
    error_message = "agent_parallelism must be a whole number, 1 or more."
  }
}

variable "agent_pool" {
  description = "Pool the agents serve (`--labels pool=<name>`): they also run enclaves with that `agent_pool`. Empty: only enclaves that name no pool."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^([a-z]([a-z0-9-]{0,61}[a-z0-9])?)?$", var.agent_pool))
    error_message = "agent_pool must be empty or an nclav id, as the enclaves' `agent_pool`: 1-63 lowercase letters, digits and dashes, starting with a letter, not ending with a dash."
  }
}

variable "agent_cpu" {
  description = "Fargate CPU units per agent task (1024 = 1 vCPU)."
  type        = number
  default     = 1024

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096, 8192, 16384], var.agent_cpu)
    error_message = "agent_cpu must be a Fargate size: 256, 512, 1024, 2048, 4096, 8192 or 16384."
  }
}

variable "agent_memory" {
  description = "Memory per agent task in MiB: about agent_parallelism x 500 MiB plus headroom (Fargate allows 2-8 x agent_cpu)."
  type        = number
  default     = 2048

  validation {
    condition     = var.agent_memory >= 512 && floor(var.agent_memory) == var.agent_memory
    error_message = "agent_memory must be a whole number of MiB, at least 512."
  }
}
